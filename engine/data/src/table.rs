//! A CSV file read whole, with its header: the labels, metadata and attribute files.

use std::path::{Path, PathBuf};

use engine_core::metrics::csv::{self, Record};

use crate::DataError;

/// The largest CSV read, in bytes (ISIC 2019's ground truth is 1.3 MB).
const MAX_CSV_BYTES: u64 = 512 << 20;

/// A CSV with a header row.
#[derive(Debug)]
pub(crate) struct Table {
    /// Where it was read from, as shown in messages.
    pub path: PathBuf,
    /// The header's names, trimmed.
    pub header: Vec<String>,
    /// The data rows.
    pub rows: Vec<Record>,
}

impl Table {
    /// Reads `path`, shown in messages as `shown`.
    pub fn read(path: &Path) -> Result<Table, DataError> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| {
            DataError::new(format!("cannot read {shown}: {}", io_reason(&e)))
                .hint("check the path (relative to the dataset's root)")
        })?;
        if meta.len() > MAX_CSV_BYTES {
            return Err(DataError::new(format!(
                "{shown} is {} MB, more than a labels CSV can be ({} MB)",
                meta.len() >> 20,
                MAX_CSV_BYTES >> 20
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| DataError::new(format!("cannot read {shown}: {}", io_reason(&e))))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            DataError::new(format!("{shown} is not UTF-8 text")).hint("save the CSV as UTF-8")
        })?;
        let mut rows = csv::parse(path, &text).map_err(|e| DataError::new(e.to_string()))?;
        if rows.is_empty() {
            return Err(DataError::new(format!("{shown} is empty"))
                .hint("a labels CSV starts with a header row naming its columns"));
        }
        let header: Vec<String> = rows
            .remove(0)
            .fields
            .into_iter()
            .map(|f| f.text.trim().to_owned())
            .collect();
        Ok(Table {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    /// The index of column `name`, if the header has it.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// The index of column `name`, or an error naming the columns there are.
    pub fn require(&self, name: &str, hint: &str) -> Result<usize, DataError> {
        self.col(name).ok_or_else(|| {
            DataError::new(format!(
                "{} has no column `{name}`; its columns are {}",
                self.path.display(),
                self.header
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .hint(hint)
        })
    }

    /// The text of field `col` of `row`, trimmed; empty when the row is short.
    pub fn field(row: &Record, col: usize) -> &str {
        row.fields.get(col).map_or("", |f| f.text.trim())
    }

    /// "FILE:LINE" of a row, for problems.
    pub fn at(&self, row: &Record) -> String {
        format!("{}:{}", self.file_name(), row.line)
    }

    /// The file's name, for short messages.
    pub fn file_name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// A short reason for an I/O error.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
