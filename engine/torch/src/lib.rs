//! Every libtorch-facing piece of the engine (tch 0.24 over libtorch 2.11.0): runtime checks now, training stages later.
//!
//! This crate is the only one (with the CLI) that links libtorch; `engine-core` never does.
//! Start with [`runtime_info`] (what libtorch this binary runs on) and [`self_test`] (a tiny
//! training run that proves forward, backward and optimizer work on a device); the CLI
//! exposes both as `engine doctor`.

pub mod detect;
mod device;
mod error;
pub mod images;
mod info;
pub mod nets;
pub mod predict;
pub mod pseudo;
pub mod sampling;
pub mod sealed;
mod selftest;
pub mod train;

pub use device::parse_device;
pub use error::Error;
pub use info::{RuntimeInfo, runtime_info};
pub use selftest::{SelfTestReport, self_test};
/// The tch version this crate is built on, re-exported so dependants need not pin it again.
pub use tch;
