//! `[tunnel.ike]` with certificates: defaults, loading, and the errors
//! `espresso check` gives for missing, unreadable, badly permissioned or
//! mismatched files. The CA is generated here (rcgen); no key is checked in.

use std::os::unix::fs::PermissionsExt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SanType,
};

use super::*;

struct Files {
    dir: PathBuf,
}

/// A CA, a leaf for `gw-a.example` with its key at mode 0600, and a
/// second key that matches nothing.
fn files(name: &str) -> Files {
    let dir = temp_dir(name);
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Test CA");
    p.distinguished_name = dn;
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Espresso");
    dn.push(DnType::CommonName, "gw-a.example");
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::DnsName("gw-a.example".try_into().unwrap())];
    let leaf = p.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("gw.pem"), leaf.pem()).unwrap();
    write_private(&dir.join("gw.key"), &key.serialize_pem());
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    write_private(&dir.join("other.key"), &other.serialize_pem());
    Files { dir }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cert_ike(lines: &str) -> String {
    format!(
        "{}\n  [tunnel.ike]\n  remote_id = \"gw-b.example\"\n{lines}\n",
        base()
    )
}

const BOTH: &str =
    "  certificate = \"gw.pem\"\n  private_key = \"gw.key\"\n  ca_certificates = [\"ca.pem\"]";

#[test]
fn cert_config_loads_and_defaults_to_pubkey_and_subject_dn() {
    let f = files("cert-ok");
    let c = GatewayConfig::from_str(&cert_ike(BOTH), f.dir.join("gw.toml")).unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!(ike.local_auth, IkeAuth::Pubkey);
    assert_eq!(ike.remote_auth, IkeAuth::Pubkey);
    assert!(ike.psk.is_empty(), "no PSK needed");
    let IkeId::Dn { der, text } = &ike.local_id else {
        panic!("{:?}", ike.local_id)
    };
    assert_eq!(text, "O=Espresso, CN=gw-a.example");
    assert_eq!(
        &ike::message::Identification::Other {
            ty: ike::message::IdType::DER_ASN1_DN,
            data: der.clone()
        },
        &ike.credential.as_ref().unwrap().loaded.subject_id()
    );
    assert_eq!(ike.local_id.to_string(), "dn:O=Espresso, CN=gw-a.example");
    // The engine gets both halves.
    let e = crate::ike_driver::engine_config(&c.tunnels[0]).unwrap();
    assert!(matches!(e.local_auth, ike::LocalAuth::Pubkey(_)));
    assert!(matches!(e.remote_auth, ike::RemoteAuth::Pubkey(_)));
    // An explicit local_id wins; PSK for one side needs the PSK.
    let text = cert_ike(&format!(
        "{BOTH}\n  local_id = \"gw-a.example\"\n  remote_auth = \"psk\"\n  ca_certificates = []"
    ));
    let e = GatewayConfig::from_str(&text, f.dir.join("gw.toml")).unwrap_err();
    assert!(e.to_string().contains("ca_certificates"), "{e}");
    let text = cert_ike(
        "  certificate = \"gw.pem\"\n  private_key = \"gw.key\"\n  local_id = \"gw-a.example\"",
    );
    let e = GatewayConfig::from_str(&text, f.dir.join("gw.toml")).unwrap_err();
    assert_eq!(e.field(), Some("tunnel[0].ike.psk"), "{e}");
    let text = format!("{text}\n  psk = \"{PSK}\"");
    let c = GatewayConfig::from_str(&text, f.dir.join("gw.toml")).unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!(ike.local_id, IkeId::Fqdn("gw-a.example".into()));
    assert_eq!(
        (ike.local_auth, ike.remote_auth),
        (IkeAuth::Pubkey, IkeAuth::Psk)
    );
}

#[test]
fn cert_config_errors_name_the_field_and_file() {
    let f = files("cert-bad");
    let cfg = f.dir.join("gw.toml");
    let err = |lines: &str| GatewayConfig::from_str(&cert_ike(lines), &cfg).unwrap_err();

    // Missing files.
    let e = err("  certificate = \"nope.pem\"\n  private_key = \"gw.key\"\n  ca_certificates = [\"ca.pem\"]");
    assert_eq!(e.field(), Some("tunnel[0].ike.certificate"), "{e}");
    assert!(e.reason().contains("nope.pem"), "{e}");
    let e = err("  certificate = \"gw.pem\"\n  private_key = \"gw.key\"\n  ca_certificates = [\"none.pem\"]");
    assert_eq!(e.field(), Some("tunnel[0].ike.ca_certificates"), "{e}");
    // A certificate without its key, a key alone.
    let e = err("  certificate = \"gw.pem\"\n  ca_certificates = [\"ca.pem\"]");
    assert_eq!(e.field(), Some("tunnel[0].ike.private_key"), "{e}");
    let e = err("  local_auth = \"pubkey\"\n  ca_certificates = [\"ca.pem\"]");
    assert_eq!(e.field(), Some("tunnel[0].ike.certificate"), "{e}");
    // The key of another certificate.
    let e = err("  certificate = \"gw.pem\"\n  private_key = \"other.key\"\n  ca_certificates = [\"ca.pem\"]");
    assert_eq!(e.field(), Some("tunnel[0].ike.private_key"), "{e}");
    assert!(e.reason().contains("does not match"), "{e}");
    // Not PEM.
    std::fs::write(f.dir.join("junk.pem"), "not a certificate").unwrap();
    let e = err("  certificate = \"junk.pem\"\n  private_key = \"gw.key\"\n  ca_certificates = [\"ca.pem\"]");
    assert_eq!(e.field(), Some("tunnel[0].ike.certificate"), "{e}");
    let e = err("  certificate = \"gw.pem\"\n  private_key = \"gw.key\"\n  ca_certificates = [\"junk.pem\"]");
    assert_eq!(e.field(), Some("tunnel[0].ike.ca_certificates"), "{e}");
    let e = err(&format!("{BOTH}\n  crls = [\"junk.pem\"]"));
    assert_eq!(e.field(), Some("tunnel[0].ike.crls"), "{e}");
    // Unknown auth word.
    let e = err(&format!("{BOTH}\n  local_auth = \"rsa\""));
    assert_eq!(e.field(), Some("tunnel[0].ike.local_auth"), "{e}");
    // A private key others may read, as a PSK file.
    let key = f.dir.join("gw.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = err(BOTH);
    assert_eq!(e.field(), Some("tunnel[0].ike.private_key"), "{e}");
    assert!(e.reason().contains("chmod 600"), "{e}");
}
