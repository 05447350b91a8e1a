//! Secrets in the configuration (ESP keys, IKE pre-shared keys): read from
//! the file or from a key file, held in [`Zeroizing`] buffers, never shown
//! by `Debug` and never quoted in error messages, not even in part.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Secret bytes: wiped on drop; `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// A secret string as written in the file (the reader accepts only a
/// string and never quotes a value of the wrong type: `key_in = 0x1234`
/// would otherwise be echoed as a number).
pub(super) struct RawSecret(pub(super) Zeroizing<String>);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawSecret(<redacted>)")
    }
}

/// Reads a key file (relative paths are relative to the configuration
/// file's directory). Returns the text, or a reason without the contents.
/// A file that group or others may read or write is refused: anyone who
/// can read the PSK can impersonate either gateway.
pub(super) fn read_secret_file(
    config_file: &Path,
    path: &Path,
) -> Result<(PathBuf, Zeroizing<String>), String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let resolved = resolve(config_file, path);
    let read = std::fs::File::open(&resolved).and_then(|mut f| {
        // The mode of the file actually opened.
        let mode = f.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Ok(Err(format!(
                "{0} can be read or written by group or others (mode {1:04o}): a key file must be \
                 private to the gateway's user; run `chmod 600 {0}`",
                resolved.display(),
                mode & 0o7777
            )));
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(Ok(bytes))
    });
    match read {
        Ok(Err(e)) => Err(e),
        Ok(Ok(bytes)) => {
            let bytes = Zeroizing::new(bytes);
            match std::str::from_utf8(&bytes) {
                Ok(s) => Ok((resolved, Zeroizing::new(s.to_owned()))),
                Err(_) => Err(format!("{} is not UTF-8 text", resolved.display())),
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", resolved.display())),
    }
}

/// `path` relative to the directory of `config_file` unless absolute.
pub(super) fn resolve(config_file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match config_file.parent() {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    }
}

/// Decodes hex key text: an optional `0x` prefix, then hex digits; ASCII
/// whitespace and `:` separators are ignored (so a key file may end with a
/// newline or be wrapped). The error says what is wrong without quoting.
pub(super) fn decode_hex(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
        t.bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != b':')
            .collect(),
    );
    if digits.is_empty() {
        return Err("is empty (expected hex digits, e.g. \"0x0123…\")".into());
    }
    if let Some(pos) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
        return Err(format!(
            "is not hex: non-hex character at digit {} (expected hex digits with an optional 0x prefix)",
            pos + 1
        ));
    }
    if digits.len() & 1 == 1 {
        return Err(format!(
            "has an odd number of hex digits ({}); each byte needs two",
            digits.len()
        ));
    }
    let mut out = Zeroizing::new(vec![0u8; digits.len() / 2]);
    hex::decode_to_slice(&digits[..], &mut out[..]).map_err(|_| "is not valid hex".to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(&decode_hex("0x0aFF").unwrap()[..], &[0x0a, 0xff]);
        assert_eq!(&decode_hex("0a ff\n").unwrap()[..], &[0x0a, 0xff]);
        assert_eq!(&decode_hex("0a:ff").unwrap()[..], &[0x0a, 0xff]);
        assert!(decode_hex("0x").unwrap_err().contains("empty"));
        assert!(decode_hex("0xabc").unwrap_err().contains("odd number"));
        let e = decode_hex("0x12zq").unwrap_err();
        assert!(e.contains("digit 3"), "{e}");
        assert!(!e.contains('z') && !e.contains('q'), "{e}");
    }

    #[test]
    fn debug_redacts() {
        let s = Secret::new(Zeroizing::new(vec![0x42; 4]));
        assert_eq!(format!("{s:?}"), "Secret(<4 bytes redacted>)");
        let r = RawSecret(Zeroizing::new("0x4242".into()));
        assert!(!format!("{r:?}").contains("4242"));
    }
}
