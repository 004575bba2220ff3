//! Diagnostics: errors about a user's file that point at a line and column and say what to do.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based position in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    /// Line, from 1; 0 when the problem concerns the whole file.
    pub line: usize,
    /// Column in characters, from 1.
    pub col: usize,
}

impl Mark {
    /// A position.
    pub fn new(line: usize, col: usize) -> Mark {
        Mark { line, col }
    }

    /// The whole file rather than a position in it.
    pub const FILE: Mark = Mark { line: 0, col: 0 };
}

/// One problem in a user's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// Where in the file.
    pub mark: Mark,
    /// What is wrong, as a lowercase sentence fragment.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a hint.
    pub fn new(file: &Path, mark: Mark, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            mark,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Renders the diagnostic, followed by the source line it points at when the source is given.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = self.to_string();
        if let Some(src) = source
            && self.mark.line > 0
            && let Some(line) = src.lines().nth(self.mark.line - 1)
        {
            let shown: String = line.chars().take(160).collect();
            let gutter = self.mark.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_at: String = shown
                .chars()
                .take(self.mark.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n {gutter} | {shown}\n {pad} | {caret_at}^"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mark.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.mark.line,
                self.mark.col,
                self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Every problem found in one file, in the order of their positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Sorts by position and removes exact duplicates.
    pub fn finish(mut self) -> Diagnostics {
        self.0
            .sort_by(|a, b| a.mark.cmp(&b.mark).then_with(|| a.message.cmp(&b.message)));
        self.0.dedup();
        self
    }

    /// Renders all diagnostics with source snippets, one block each.
    pub fn render(&self, source: Option<&str>) -> String {
        self.0
            .iter()
            .map(|d| d.render(source))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest of `candidates` to `word`, when one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Formats names as a list of code spans: `a`, `b`, `c`.
pub fn code_list<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_message_and_hint() {
        let d = Diagnostic::new(Path::new("m.yaml"), Mark::new(2, 3), "unknown field `x`")
            .hint("remove it");
        assert_eq!(
            d.to_string(),
            "m.yaml:2:3: unknown field `x` (hint: remove it)"
        );
        assert_eq!(
            d.render(Some("a: 1\n  x: 2\n")),
            "m.yaml:2:3: unknown field `x` (hint: remove it)\n 2 |   x: 2\n   |   ^"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("lamda", ["lambda", "alpha"]), Some("lambda"));
        assert_eq!(did_you_mean("zzz", ["lambda", "alpha"]), None);
    }
}
