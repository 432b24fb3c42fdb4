//! Loading data files under `config/`: small CSV tables and TOML documents.
//!
//! Every error names the file and, where there is one, the line, so a wrong table is fixed in
//! a minute. CSV here is deliberately simple: comma-separated, no quoting, `#` starts a comment
//! line, and the first non-comment line is a header that must match what the loader expects.

use std::fmt;
use std::path::{Path, PathBuf};

/// A data file that could not be loaded or failed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub file: PathBuf,
    /// 1-based line number, when the problem is on one line.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for DataError {}

impl DataError {
    pub fn at(file: &Path, line: usize, message: impl Into<String>) -> Self {
        DataError {
            file: file.to_path_buf(),
            line: Some(line),
            message: message.into(),
        }
    }
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        DataError {
            file: file.to_path_buf(),
            line: None,
            message: message.into(),
        }
    }
}

/// One data row: its line number and its fields.
pub struct Row<'a> {
    pub line: usize,
    pub fields: Vec<&'a str>,
}

/// The text of a data file, read whole.
pub struct DataFile {
    pub path: PathBuf,
    pub text: String,
}

impl DataFile {
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| DataError::file(path, format!("cannot read data file: {e}")))?;
        Ok(DataFile {
            path: path.to_path_buf(),
            text,
        })
    }

    /// Splits a CSV table, checking its header and the field count of every row.
    pub fn csv(&self, header: &[&str]) -> Result<Vec<Row<'_>>, DataError> {
        let mut rows = Vec::new();
        let mut seen_header = false;
        for (i, raw) in self.text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
            if !seen_header {
                if fields != header {
                    return Err(self.err(line, format!("header must be `{}`", header.join(","))));
                }
                seen_header = true;
                continue;
            }
            if fields.len() != header.len() {
                return Err(self.err(
                    line,
                    format!(
                        "expected {} fields ({}), found {}",
                        header.len(),
                        header.join(","),
                        fields.len()
                    ),
                ));
            }
            rows.push(Row { line, fields });
        }
        if !seen_header {
            return Err(DataError::file(
                &self.path,
                format!("empty table; header must be `{}`", header.join(",")),
            ));
        }
        Ok(rows)
    }

    /// Parses the file as TOML into `T`; errors carry the line of the offending key.
    pub fn toml<T: serde::de::DeserializeOwned>(&self) -> Result<T, DataError> {
        toml::from_str(&self.text).map_err(|e| {
            let line = e.span().map(|s| self.text[..s.start].lines().count().max(1));
            DataError {
                file: self.path.clone(),
                line,
                message: e.message().to_string(),
            }
        })
    }

    pub fn err(&self, line: usize, message: impl Into<String>) -> DataError {
        DataError::at(&self.path, line, message)
    }
}

/// Parses a `YYYY-MM-DD` date field.
pub fn parse_date(file: &DataFile, line: usize, text: &str) -> Result<chrono::NaiveDate, DataError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| file.err(line, format!("`{text}` is not a date (YYYY-MM-DD)")))
}

/// Parses a decimal field exactly.
pub fn parse_dec(file: &DataFile, line: usize, text: &str, what: &str) -> Result<rust_decimal::Decimal, DataError> {
    crate::money::parse_decimal(text, 12, false).map_err(|e| file.err(line, format!("{what} {}", e.describe(text))))?;
    // Keep the scale as written (`0.10` stays `0.10` on every assessment).
    rust_decimal::Decimal::from_str_exact(text).map_err(|e| file.err(line, format!("{what} `{text}`: {e}")))
}

/// A small, stable content hash (FNV-1a, 64-bit) used to fingerprint rate data.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
