//! The engine's core: manifests, their schema and validation, the stage graph, the
//! cache and the executors. It never links libtorch, so manifests can be validated,
//! planned and reviewed on any laptop.

pub mod agent;
pub mod cache;
pub mod canonical;
pub mod clock;
pub mod dag;
pub mod diag;
pub mod events;
pub mod exec;
pub mod fingerprint;
pub mod job;
pub mod load;
pub mod manifest;
pub mod metrics;
pub mod plan;
pub mod record;
pub mod schema;
pub mod source;
pub mod stages;
pub mod store;
pub mod task;
pub mod upgrade;
