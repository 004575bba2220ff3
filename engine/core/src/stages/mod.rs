//! Stage kinds that need no libtorch; the libtorch-facing kinds live in the `engine-torch` crate.

pub mod audit;
pub mod command;
pub mod detect;
pub mod evaluate;
pub mod predict;
pub mod pseudo;
pub mod train;
