//! The TOML document walked key by key, every problem collected.
//!
//! The file is parsed with `toml_edit`, which keeps the byte span of every
//! key and value, and each table is read through a [`Tbl`]: one typed
//! getter call per key (`t.opt_int("mtu", 576..=9600)`). A getter checks the
//! type and the range, records the value's span under its field path (so
//! later semantic errors get a line and column too) and marks the key as
//! known; [`Tbl::finish`] then reports every key nobody asked for as
//! unknown, with a did-you-mean suggestion and the list of valid keys. So
//! a new key is one getter call in `raw.rs`: its type, range, span and
//! unknown-key handling come with it.
//!
//! Nothing here quotes a value it did not understand: secrets are strings,
//! and a secret written as a number must not end up in a log.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike, Value};
use zeroize::Zeroizing;

use super::error::{line_col, ConfigError, ErrorKind, Severity};
use super::secret::RawSecret;

/// Every error and warning of one file, and the span of every field read.
pub(super) struct Diags<'a> {
    text: &'a str,
    file: &'a Path,
    list: RefCell<Vec<ConfigError>>,
    spans: RefCell<HashMap<String, Range<usize>>>,
}

impl<'a> Diags<'a> {
    pub(super) fn new(text: &'a str, file: &'a Path) -> Self {
        Self {
            text,
            file,
            list: RefCell::new(Vec::new()),
            spans: RefCell::new(HashMap::new()),
        }
    }

    pub(super) fn file(&self) -> &'a Path {
        self.file
    }

    fn record(&self, field: &str, span: Option<Range<usize>>) {
        if let Some(s) = span {
            self.spans
                .borrow_mut()
                .entry(field.to_string())
                .or_insert(s);
        }
    }

    /// The span of `field`, or of the closest enclosing field that has one
    /// (`tunnel[0].ike.proposals[1]`, then `tunnel[0].ike.proposals`, …).
    fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let spans = self.spans.borrow();
        let mut f = field;
        loop {
            if let Some(s) = spans.get(f) {
                return Some(s.clone());
            }
            f = &f[..f.rfind(['.', '['])?];
        }
    }

    fn push_at(
        &self,
        kind: ErrorKind,
        severity: Severity,
        span: Option<Range<usize>>,
        field: &str,
        reason: String,
    ) {
        let lc = span.map(|s| line_col(self.text, s.start));
        let field = (!field.is_empty()).then(|| field.to_string());
        self.list.borrow_mut().push(ConfigError::new(
            kind, severity, self.file, lc, field, reason,
        ));
    }

    /// A problem with the file's structure (type, range, unknown key).
    fn syntax(&self, span: Option<Range<usize>>, field: &str, reason: String) {
        self.push_at(ErrorKind::Syntax, Severity::Error, span, field, reason);
    }

    /// An error about `field`'s value, placed at its span.
    pub(super) fn invalid(&self, field: &str, reason: String) -> ConfigError {
        let lc = self.span_of(field).map(|s| line_col(self.text, s.start));
        ConfigError::new(
            ErrorKind::Invalid,
            Severity::Error,
            self.file,
            lc,
            Some(field.to_string()),
            reason,
        )
    }

    pub(super) fn push(&self, e: ConfigError) {
        self.list.borrow_mut().push(e);
    }

    /// A warning about `field`, placed at its span.
    pub(super) fn warn(&self, field: &str, reason: String) {
        let span = self.span_of(field);
        self.push_at(ErrorKind::Invalid, Severity::Warning, span, field, reason);
    }

    pub(super) fn error_count(&self) -> usize {
        self.list
            .borrow()
            .iter()
            .filter(|e| e.severity() == Severity::Error)
            .count()
    }

    /// Everything reported, in file order (errors without a place last).
    pub(super) fn into_list(self) -> Vec<ConfigError> {
        let mut list = self.list.into_inner();
        list.sort_by_key(|e| e.line_col().unwrap_or((usize::MAX, 0)));
        list
    }
}

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub(super) fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `"a", "b" or "c"`.
pub(super) fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// What a TOML item is, for "expected X, found Y".
fn kind_of(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a date-time",
        Item::Value(Value::Array(_)) => "an array",
        Item::Value(Value::InlineTable(_)) | Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

/// One table of the file being read (see the module documentation).
pub(super) struct Tbl<'d, 'a> {
    d: &'d Diags<'a>,
    /// Field path of the table: empty for the top level, `tunnel[0].ike`.
    path: String,
    /// How the operator wrote it: `[[tunnel]]`, `[tunnel.ike]`.
    header: String,
    t: &'a dyn TableLike,
    /// Where the table starts (its header), for "missing key" errors.
    span: Option<Range<usize>>,
    known: RefCell<Vec<&'static str>>,
    deprecated: RefCell<Vec<&'static str>>,
}

impl<'d, 'a> Tbl<'d, 'a> {
    pub(super) fn root(d: &'d Diags<'a>, t: &'a dyn TableLike) -> Self {
        Self::new(d, String::new(), "the top level".into(), t, None)
    }

    fn new(
        d: &'d Diags<'a>,
        path: String,
        header: String,
        t: &'a dyn TableLike,
        span: Option<Range<usize>>,
    ) -> Self {
        Self {
            d,
            path,
            header,
            t,
            span,
            known: RefCell::new(Vec::new()),
            deprecated: RefCell::new(Vec::new()),
        }
    }

    /// The field path of `key` in this table.
    pub(super) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.t.key(key).and_then(|k| k.span())
    }

    fn item_span(&self, key: &str, item: &Item) -> Option<Range<usize>> {
        item.span().or_else(|| self.key_span(key))
    }

    /// Marks `key` as known and returns its item, recording its span.
    fn get(&self, key: &'static str) -> Option<&'a Item> {
        if !self.known.borrow().contains(&key) {
            self.known.borrow_mut().push(key);
        }
        let item = self.t.get(key).filter(|i| !i.is_none())?;
        self.d.record(&self.field(key), self.item_span(key, item));
        Some(item)
    }

    pub(super) fn type_error(&self, key: &str, item: &Item, expected: impl Display) {
        self.d.syntax(
            self.item_span(key, item),
            &self.field(key),
            format!("expected {expected}, found {}", kind_of(item)),
        );
    }

    /// An error about `key`'s value (for the readers of composite values).
    pub(super) fn error(&self, key: &str, reason: String) {
        let span = self.t.get(key).and_then(|i| self.item_span(key, i));
        self.d.syntax(span, &self.field(key), reason);
    }

    /// Whether `key` is in the table (whatever its value).
    pub(super) fn field_present(&self, key: &str) -> bool {
        self.t.get(key).is_some_and(|i| !i.is_none())
    }

    /// `key` is required: reports it when missing.
    pub(super) fn required<T>(&self, key: &str, v: Option<T>) -> Option<T> {
        if v.is_none() && !self.field_present(key) {
            self.d.syntax(
                self.span.clone(),
                &self.field(key),
                format!("missing: {} needs `{key}`", self.header),
            );
        }
        v
    }

    pub(super) fn opt_str(&self, key: &'static str) -> Option<String> {
        let item = self.get(key)?;
        match item.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.type_error(key, item, "a string");
                None
            }
        }
    }

    pub(super) fn req_str(&self, key: &'static str) -> Option<String> {
        let v = self.opt_str(key);
        self.required(key, v)
    }

    pub(super) fn opt_path(&self, key: &'static str) -> Option<PathBuf> {
        self.opt_str(key).map(PathBuf::from)
    }

    pub(super) fn opt_bool(&self, key: &'static str) -> Option<bool> {
        let item = self.get(key)?;
        match item.as_bool() {
            Some(b) => Some(b),
            None => {
                self.type_error(key, item, "true or false");
                None
            }
        }
    }

    /// An integer in `range`; the message names the range either way.
    pub(super) fn opt_int<T: TryFrom<i64>>(
        &self,
        key: &'static str,
        range: RangeInclusive<i64>,
    ) -> Option<T> {
        let item = self.get(key)?;
        let Some(n) = item.as_integer() else {
            self.type_error(
                key,
                item,
                format_args!("an integer in {}..={}", range.start(), range.end()),
            );
            return None;
        };
        if !range.contains(&n) {
            self.d.syntax(
                self.item_span(key, item),
                &self.field(key),
                format!("{n} is out of range {}..={}", range.start(), range.end()),
            );
            return None;
        }
        T::try_from(n).ok()
    }

    pub(super) fn req_int<T: TryFrom<i64>>(
        &self,
        key: &'static str,
        range: RangeInclusive<i64>,
    ) -> Option<T> {
        let v = self.opt_int(key, range);
        self.required(key, v)
    }

    /// One of `words`; an unknown word is reported with the list.
    pub(super) fn opt_word(&self, key: &'static str, words: &[&'static str]) -> Option<usize> {
        let item = self.get(key)?;
        let Some(s) = item.as_str() else {
            self.type_error(key, item, one_of(words));
            return None;
        };
        match words.iter().position(|w| *w == s) {
            Some(i) => Some(i),
            None => {
                let hint = did_you_mean(s, words)
                    .map(|w| format!("did you mean \"{w}\"? "))
                    .unwrap_or_default();
                self.d.syntax(
                    self.item_span(key, item),
                    &self.field(key),
                    format!("unknown value \"{s}\"; {hint}expected {}", one_of(words)),
                );
                None
            }
        }
    }

    pub(super) fn opt_str_list(&self, key: &'static str) -> Option<Vec<String>> {
        let item = self.get(key)?;
        let Some(array) = item.as_array() else {
            self.type_error(key, item, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(array.len());
        let mut ok = true;
        for (i, v) in array.iter().enumerate() {
            let field = format!("{}[{i}]", self.field(key));
            self.d.record(&field, v.span());
            match v.as_str() {
                Some(s) => out.push(s.to_string()),
                None => {
                    self.d.syntax(
                        v.span(),
                        &field,
                        format!(
                            "expected a string, found {}",
                            kind_of(&Item::Value(v.clone()))
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A secret string; a value of another type is not quoted.
    pub(super) fn opt_secret(&self, key: &'static str) -> Option<RawSecret> {
        let item = self.get(key)?;
        match item.as_str() {
            Some(s) => Some(RawSecret(Zeroizing::new(s.to_string()))),
            None => {
                self.d.syntax(
                    self.item_span(key, item),
                    &self.field(key),
                    "expected a quoted string (the value is not shown: secret)".into(),
                );
                None
            }
        }
    }

    /// The item itself, for values of more than one type (`dscp = "copy"`
    /// or `dscp = 10`); the caller checks it and reports with
    /// [`Tbl::error`].
    pub(super) fn opt_item(&self, key: &'static str) -> Option<&'a Item> {
        self.get(key)
    }

    /// `key` renamed `old`, still read: the old name is a warning naming
    /// the new one (at the old key's line), both at once an error. The
    /// value's span is recorded under the new name, which is the one the
    /// semantic checks use.
    pub(super) fn renamed(&self, key: &'static str, old: &'static str) -> Option<&'a Item> {
        self.deprecated.borrow_mut().push(old);
        let new = self.get(key);
        let Some(old_item) = self.t.get(old).filter(|i| !i.is_none()) else {
            return new;
        };
        let old_span = self.key_span(old).or_else(|| old_item.span());
        if new.is_some() {
            self.d.syntax(
                old_span,
                &self.field(old),
                format!("give `{key}` only (`{old}` is its old name)"),
            );
            return None;
        }
        self.d.push_at(
            ErrorKind::Syntax,
            Severity::Warning,
            old_span,
            &self.field(old),
            format!("`{old}` is deprecated here; rename it to `{key}`"),
        );
        self.d
            .record(&self.field(key), self.item_span(old, old_item));
        Some(old_item)
    }

    /// A sub-table, `[a.b]` or `b = { … }`.
    pub(super) fn opt_table(&self, key: &'static str, header: &str) -> Option<Tbl<'d, 'a>> {
        let item = self.get(key)?;
        match item.as_table_like() {
            Some(t) => Some(Tbl::new(
                self.d,
                self.field(key),
                header.into(),
                t,
                self.item_span(key, item),
            )),
            None => {
                self.type_error(key, item, format_args!("a table {header}"));
                None
            }
        }
    }

    /// An array of tables, `[[a.b]]` or `b = [{ … }, …]`.
    pub(super) fn tables(&self, key: &'static str, header: &str) -> Vec<Tbl<'d, 'a>> {
        let Some(item) = self.get(key) else {
            return Vec::new();
        };
        let field = self.field(key);
        let mut out = Vec::new();
        match item {
            Item::ArrayOfTables(aot) => {
                for (i, t) in aot.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    self.d.record(&f, t.span());
                    out.push(Tbl::new(self.d, f, header.into(), t, t.span()));
                }
            }
            Item::Value(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    self.d.record(&f, v.span());
                    match v.as_inline_table() {
                        Some(t) => out.push(Tbl::new(self.d, f, header.into(), t, v.span())),
                        None => self.d.syntax(
                            v.span(),
                            &f,
                            format!(
                                "expected a table {header}, found {}",
                                kind_of(&Item::Value(v.clone()))
                            ),
                        ),
                    }
                }
            }
            other => self.type_error(key, other, format_args!("an array of tables {header}")),
        }
        out
    }

    /// Reports every key of the table that no getter asked for.
    pub(super) fn finish(self) {
        let known = self.known.take();
        let deprecated = self.deprecated.take();
        for (key, item) in self.t.iter() {
            if known.contains(&key) || deprecated.contains(&key) {
                continue;
            }
            let hint = did_you_mean(key, &known)
                .map(|w| format!("did you mean \"{w}\"? "))
                .unwrap_or_default();
            let span = self.key_span(key).or_else(|| item.span());
            self.d.syntax(
                span,
                &self.field(key),
                format!(
                    "unknown field \"{key}\" in {}; {hint}valid fields: {}",
                    self.header,
                    known.join(", ")
                ),
            );
        }
    }
}

/// A string, or an array of exactly one string (swanctl.conf's
/// `local_addrs`/`local_ts` are lists; a tunnel here has one of each).
pub(super) fn one_string(t: &Tbl, key: &'static str, item: &Item, what: &str) -> Option<String> {
    if let Some(s) = item.as_str() {
        return Some(s.to_string());
    }
    match item.as_array() {
        Some(a) if a.len() == 1 => match a.get(0).and_then(Value::as_str) {
            Some(s) => return Some(s.to_string()),
            None => t.type_error(key, item, format_args!("a string ({what})")),
        },
        Some(a) => t.error(
            key,
            format!(
                "{} values given; this takes exactly one {what} (write one [[tunnel]] or [[tunnel.policy]] per extra one)",
                a.len()
            ),
        ),
        None => t.type_error(key, item, format_args!("a string ({what})")),
    }
    None
}
