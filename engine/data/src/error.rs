//! Why a dataset cannot be used at all (as opposed to a [`crate::Problem`] with one image).

/// A dataset that cannot be read: a missing labels file, a missing column, nothing left.
/// The message names the file and what is wrong; the hint says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DataError {
    /// What is wrong, naming the file.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl DataError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> DataError {
        DataError {
            message: message.into(),
            hint: None,
        }
    }

    /// Adds what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> DataError {
        self.hint = Some(hint.into());
        self
    }

    /// The message, then the hint on its own line.
    pub fn render(&self) -> String {
        match &self.hint {
            Some(h) => format!("error: {}\n  hint: {h}", self.message),
            None => format!("error: {}", self.message),
        }
    }
}
