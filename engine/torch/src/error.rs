//! The error type of engine-torch.

/// What can go wrong in a libtorch-facing call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libtorch reported an error (through one of tch's fallible `f_*` calls).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A device string that is none of `cpu`, `cuda`, `cuda:N`, `auto`.
    #[error("unknown device '{0}': expected cpu, cuda, cuda:N or auto")]
    UnknownDevice(String),
    /// A CUDA device was asked for that this process cannot see.
    #[error(
        "CUDA device {requested} requested but libtorch sees {available} CUDA device(s) \
         (is this a CUDA build, and does the host have a GPU and driver?)"
    )]
    CudaUnavailable {
        /// The ordinal asked for.
        requested: usize,
        /// How many CUDA devices libtorch reports.
        available: i64,
    },
    /// The self-test ran but its result is wrong (non-finite loss, no progress, bad gradients).
    #[error("self-test failed: {0}")]
    SelfTest(String),
    /// A tch call that has no fallible variant panicked (libtorch threw inside it).
    #[error("libtorch call panicked: {0}")]
    Panic(String),
}

/// The message a caught panic carried (tch panics on libtorch errors in calls that have no
/// fallible variant).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned())
}
