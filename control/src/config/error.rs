//! [`ConfigError`]: one message naming the file, where in it (line and
//! column, and the field path) and what is wrong, as an error or a warning.
//! Messages never contain secret values.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What kind of problem a [`ConfigError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Read,
    /// The text is not TOML, or a value has the wrong type, or a key is not
    /// part of the schema (the TOML parser's line and column are kept).
    Syntax,
    /// The file parses but a value is not acceptable.
    Invalid,
}

/// Whether a problem stops the file from being used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is usable, but probably not as meant (a deprecated key, a
    /// policy that overlaps another one with a different outcome).
    Warning,
    /// The file is refused.
    Error,
}

/// One problem in a configuration file, in the compilers' form
/// `FILE:LINE:COL: error|warning: FIELD: MESSAGE`:
///
/// ```text
/// site-a.toml:88:3: error: tunnel[0].sa[0].key_in: aes256gcm16 needs a 36-byte key (32-byte AES key + 4-byte salt), got 32 bytes
/// site-a.toml:71:1: warning: tunnel[0].local: `local` is deprecated; rename it to `local_addrs`
/// ```
#[derive(Debug)]
pub struct ConfigError {
    kind: ErrorKind,
    severity: Severity,
    file: PathBuf,
    line_col: Option<(usize, usize)>,
    field: Option<String>,
    reason: String,
    source: Option<io::Error>,
}

impl ConfigError {
    pub(super) fn read(file: &Path, source: io::Error) -> Self {
        Self {
            kind: ErrorKind::Read,
            severity: Severity::Error,
            file: file.to_path_buf(),
            line_col: None,
            field: None,
            reason: format!("cannot read: {source}"),
            source: Some(source),
        }
    }

    pub(super) fn new(
        kind: ErrorKind,
        severity: Severity,
        file: &Path,
        line_col: Option<(usize, usize)>,
        field: Option<String>,
        reason: String,
    ) -> Self {
        Self {
            kind,
            severity,
            file: file.to_path_buf(),
            line_col,
            field,
            reason,
            source: None,
        }
    }

    /// Error or warning.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file, as it was named to [`GatewayConfig::load`] or
    /// [`GatewayConfig::from_str`](super::GatewayConfig::from_str).
    ///
    /// [`GatewayConfig::load`]: super::GatewayConfig::load
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The field path, e.g. `tunnel[0].sa[1].key_in`, when the problem is
    /// with one field.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Line and column (1-based) of the key or value at fault, when the
    /// problem is with one place in the file.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        self.line_col
    }

    /// What is wrong, without the file and field.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.line_col {
            write!(f, ":{line}:{col}")?;
        }
        if self.kind != ErrorKind::Read {
            f.write_str(match self.severity {
                Severity::Error => ": error",
                Severity::Warning => ": warning",
            })?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// A field path under construction: `tunnel[0]` + `sa[1]` + `key_in`.
#[derive(Clone, Debug)]
pub(super) struct FieldPath(String);

impl FieldPath {
    pub(super) fn indexed(name: &str, index: usize) -> Self {
        Self(format!("{name}[{index}]"))
    }

    /// `self.name`.
    pub(super) fn key(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }

    /// `self.name[index]`.
    pub(super) fn item(&self, name: &str, index: usize) -> Self {
        Self(format!("{}.{name}[{index}]", self.0))
    }

    /// `self[index]` (an element of the array this path names).
    pub(super) fn at(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.0
    }
}

impl From<&FieldPath> for String {
    fn from(p: &FieldPath) -> String {
        p.0.clone()
    }
}
