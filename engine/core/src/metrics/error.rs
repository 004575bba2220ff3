//! Why a metric could not be computed from the values it was given.

use crate::diag::Diagnostic;

/// Why metrics could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Inputs that must have one entry per item have different lengths.
    #[error("{what}: {got} values for {want} items")]
    Length {
        /// Which input.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The number of items.
        want: usize,
    },
    /// There is nothing to evaluate.
    #[error("no predictions to evaluate")]
    Empty,
    /// A score is NaN or infinite.
    #[error("score {index} is {value}, not a finite number")]
    NotFinite {
        /// The item, from 0.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Only one class is present, so ROC curves and AUCs are undefined.
    #[error("{0}: AUC is undefined with a single class present")]
    SingleClass(String),
    /// A class label is outside the known classes.
    #[error("label {label} of item {index} is not below the number of classes, {classes}")]
    Label {
        /// The item, from 0.
        index: usize,
        /// The label.
        label: u32,
        /// The number of classes.
        classes: usize,
    },
    /// Fewer than two classes were given.
    #[error("{0} classes given; at least two are needed")]
    TooFewClasses(usize),
    /// A detection or ground-truth box refers to an unknown image or category, or is malformed.
    #[error("{0}")]
    Detection(String),
}

/// Why a predictions or ground-truth file cannot be used: one diagnostic that names the
/// file, the line (and column where there is one) and says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub Box<Diagnostic>);

impl InputError {
    /// The diagnostic.
    pub fn diagnostic(&self) -> &Diagnostic {
        &self.0
    }
}

impl From<Diagnostic> for InputError {
    fn from(d: Diagnostic) -> InputError {
        InputError(Box::new(d))
    }
}
