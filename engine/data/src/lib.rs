//! Datasets: readers of the real layouts (folder-per-class, CSV of images, ISIC 2019, YOLO
//! boxes, SIIM-ACR DICOM with run-length-encoded masks, attribute CSVs), image decoding
//! (PNG, JPEG, DICOM), patient-level seeded splits whose test part is sealed, the data
//! audit, and synthetic datasets in the same layouts.
//!
//! Never links libtorch: `engine audit` and `engine synth` run on a laptop without it.
//!
//! The flow: [`read`] indexes a declared dataset into a [`Catalog`] (labels, groups,
//! attributes, and every inconsistency as a [`Problem`]), [`Catalog::partition`] splits
//! it, and what comes out ([`Partition`]) hands out the training and validation items only;
//! the test items need a [`TestKey`], whose one constructor records that the test set was
//! opened.

pub mod audit;
pub mod augment;
pub mod dicom;
mod error;
pub mod image;
pub mod imagecache;
mod item;
pub mod masks;
mod par;
pub mod read;
pub mod rle;
pub mod salt;
pub mod split;
pub mod synth;
mod table;

pub use error::DataError;
pub use item::{BoxAnn, Catalog, Item, Problem, ProblemKind};
pub use read::read;
pub use split::{Partition, Split, SplitCounts, TestKey};
