//! `[tunnel.ike]` certificate files: `certificate` and `private_key` (the
//! key with the permission check of secrets), `ca_certificates` and
//! `crls`, loaded into the IKE engine's types so `espresso check` reports
//! unreadable files, bad PEM and a key that does not match its
//! certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ike::cert::{LocalCredential, TrustStore};

use super::secret::{read_secret_file, resolve};
use super::{IkeCredential, IkeTrust};

/// Largest certificate, CA or CRL file read (a CRL of a large CA can be
/// a few MB; a certificate chain is a few KB).
const MAX_FILE: u64 = 16 << 20;

/// A public file (certificate, CA, CRL): readable by anyone is fine.
fn read_public(config_file: &Path, path: &Path) -> Result<(PathBuf, Vec<u8>), String> {
    let resolved = resolve(config_file, path);
    let len = std::fs::metadata(&resolved)
        .map_err(|e| format!("cannot read {}: {e}", resolved.display()))?
        .len();
    if len > MAX_FILE {
        return Err(format!(
            "{} is {len} bytes, more than the {MAX_FILE} accepted",
            resolved.display()
        ));
    }
    let bytes =
        std::fs::read(&resolved).map_err(|e| format!("cannot read {}: {e}", resolved.display()))?;
    Ok((resolved, bytes))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        c.update(&(p.len() as u64).to_be_bytes());
        c.update(p);
    }
    let mut out = [0; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// Loads our chain and key. Errors name the field they belong to.
pub(super) fn credential(
    config_file: &Path,
    certificate: &Path,
    private_key: &Path,
) -> Result<IkeCredential, (&'static str, String)> {
    let (cert_path, cert) =
        read_public(config_file, certificate).map_err(|e| ("certificate", e))?;
    let (key_path, key) =
        read_secret_file(config_file, private_key).map_err(|e| ("private_key", e))?;
    let loaded = LocalCredential::from_pem(&cert, key.as_bytes()).map_err(|e| {
        use ike::cert::LoadError as L;
        match e {
            L::NoKey | L::BadKey(_) | L::KeyMismatch => (
                "private_key",
                format!("{} (for {}): {e}", key_path.display(), cert_path.display()),
            ),
            _ => ("certificate", format!("{}: {e}", cert_path.display())),
        }
    })?;
    Ok(IkeCredential {
        digest: sha256(&[&cert, key.as_bytes()]),
        certificate: cert_path,
        private_key: key_path,
        loaded: Arc::new(loaded),
    })
}

/// Loads trust anchors and CRLs.
pub(super) fn trust(
    config_file: &Path,
    cas: &[String],
    crls: &[String],
    allow_rsa_sha1: bool,
) -> Result<IkeTrust, (&'static str, String)> {
    if cas.is_empty() {
        return Err((
            "ca_certificates",
            "is empty: name at least one CA certificate (PEM)".into(),
        ));
    }
    let mut ca_paths = Vec::new();
    let mut ca_bytes = Vec::new();
    for c in cas {
        let (p, b) = read_public(config_file, Path::new(c)).map_err(|e| ("ca_certificates", e))?;
        if let Err(e) = TrustStore::new(&[&b], &[]) {
            return Err(("ca_certificates", format!("{}: {e}", p.display())));
        }
        ca_paths.push(p);
        ca_bytes.push(b);
    }
    let mut crl_paths = Vec::new();
    let mut crl_bytes = Vec::new();
    for c in crls {
        let (p, b) = read_public(config_file, Path::new(c)).map_err(|e| ("crls", e))?;
        if let Err(e) = TrustStore::new(&[&ca_bytes[0]], &[&b]) {
            return Err(("crls", format!("{}: {e}", p.display())));
        }
        crl_paths.push(p);
        crl_bytes.push(b);
    }
    let ca_refs: Vec<&[u8]> = ca_bytes.iter().map(Vec::as_slice).collect();
    let crl_refs: Vec<&[u8]> = crl_bytes.iter().map(Vec::as_slice).collect();
    let mut store =
        TrustStore::new(&ca_refs, &crl_refs).map_err(|e| ("ca_certificates", e.to_string()))?;
    store.allow_sha1 = allow_rsa_sha1;
    let mut parts = ca_refs.clone();
    parts.extend(&crl_refs);
    let flag = [u8::from(allow_rsa_sha1)];
    parts.push(&flag);
    Ok(IkeTrust {
        ca_certificates: ca_paths,
        crls: crl_paths,
        store: Arc::new(store),
        digest: sha256(&parts),
    })
}
