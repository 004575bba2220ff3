//! What a reader produces: items (one image each, with its label, group and attributes),
//! the classes, and the problems met on the way.

use std::collections::BTreeMap;
use std::path::PathBuf;

use engine_core::manifest::DatasetFormat;
use serde::Serialize;

use crate::salt::Salt;

/// One image of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The image's id: its file name without extension (SIIM-ACR: the SOP instance UID;
    /// ISIC: `ISIC_0000000`).
    pub id: String,
    /// The image file, relative to the dataset's root.
    pub path: PathBuf,
    /// The patient, when the dataset says (DICOM `PatientID`, a `patient_id` column).
    pub patient: Option<String>,
    /// The lesion, when the dataset says (ISIC's `lesion_id`).
    pub lesion: Option<String>,
    /// The label: an index into [`Catalog::classes`].
    pub class: usize,
    /// Boxes, when the image was boxed (an empty list: boxed, nothing found); `None` when
    /// it has an image-level label only.
    pub boxes: Option<Vec<BoxAnn>>,
    /// Whether a segmentation mask outlines the finding (SIIM-ACR positives).
    pub has_mask: bool,
    /// Attribute values (0/1 or probabilities) by attribute name; absent when unknown.
    pub attributes: BTreeMap<String, f64>,
}

/// A box in YOLO's normalised centre form.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BoxAnn {
    /// Index into [`Catalog::box_classes`].
    pub class: usize,
    /// Centre x, from 0 (left) to 1.
    pub cx: f32,
    /// Centre y, from 0 (top) to 1.
    pub cy: f32,
    /// Width, as a share of the image's width.
    pub w: f32,
    /// Height, as a share of the image's height.
    pub h: f32,
}

/// Something wrong with one image or one row; the rest of the dataset stays usable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The image (or row, as `FILE:LINE`) it concerns.
    pub subject: String,
    /// What exactly.
    pub detail: String,
}

/// Kinds of [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A label row names an image that does not exist.
    LabelWithoutImage,
    /// An image has no label.
    ImageWithoutLabel,
    /// A row cannot be read (bad value, no class, several classes, duplicate).
    BadRow,
    /// An attribute row names an image the dataset does not have.
    AttributeWithoutImage,
    /// The image file cannot be decoded (truncated, corrupt, unsupported).
    Unreadable,
}

impl ProblemKind {
    /// A short phrase for summaries.
    pub fn describe(self) -> &'static str {
        match self {
            ProblemKind::LabelWithoutImage => "label rows without an image",
            ProblemKind::ImageWithoutLabel => "images without a label",
            ProblemKind::BadRow => "rows that cannot be read",
            ProblemKind::AttributeWithoutImage => "attribute rows without an image",
            ProblemKind::Unreadable => "unreadable images",
        }
    }
}

/// A dataset as its reader indexed it: the items, not yet split.
///
/// Its items are private to this crate: the only way out is [`Catalog::partition`], whose
/// result seals the test split.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// The layout it was read from.
    pub format: DatasetFormat,
    /// The dataset's root directory.
    pub root: PathBuf,
    /// What the label says (`pneumothorax`, `diagnosis`, `fracture`, `drain`).
    pub target: String,
    /// The class names; with two classes, the second is the positive one.
    pub classes: Vec<String>,
    /// YOLO's class map (the classes boxes can have); empty for other formats.
    pub box_classes: Vec<String>,
    /// The attributes the dataset declares, in name order.
    pub attributes: Vec<String>,
    /// Whether image ids are DICOM identifiers, which never leave the engine in clear.
    pub sensitive_ids: bool,
    /// Facts about the layout worth telling (a class with no images left out, ...).
    pub notes: Vec<String>,
    /// Everything the reader found wrong.
    pub problems: Vec<Problem>,
    pub(crate) items: Vec<Item>,
    pub(crate) salt: Salt,
}

impl Catalog {
    /// The number of items indexed.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing was indexed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the label is binary (two classes, the second positive).
    pub fn is_binary(&self) -> bool {
        self.classes.len() == 2
    }

    /// Whether any item has a patient id.
    pub fn has_patients(&self) -> bool {
        self.items.iter().any(|i| i.patient.is_some())
    }

    /// Whether any item has a lesion id.
    pub fn has_lesions(&self) -> bool {
        self.items.iter().any(|i| i.lesion.is_some())
    }

    /// Every image's id and path under the root, without its label or anything else: for
    /// stages that label images themselves (`model.predict`). No label leaves the catalog
    /// this way, so the test split's stay sealed.
    pub fn images(&self) -> Vec<(String, PathBuf)> {
        self.items
            .iter()
            .map(|i| (i.id.clone(), i.path.clone()))
            .collect()
    }

    /// How an image id appears in outputs: itself, or (DICOM identifiers) its salted hash.
    pub fn shown_id(&self, id: &str) -> String {
        if self.sensitive_ids {
            self.salt.hash("img", id)
        } else {
            id.to_owned()
        }
    }

    /// How a patient (or lesion) id appears in outputs: always its salted hash.
    pub fn shown_group(&self, id: &str) -> String {
        self.salt.hash("pt", id)
    }

    /// How an item appears in outputs: its path under the root, or its hashed id.
    pub fn shown_item(&self, item: &Item) -> String {
        if self.sensitive_ids {
            self.shown_id(&item.id)
        } else {
            item.path.display().to_string()
        }
    }

    /// Records a problem.
    pub(crate) fn problem(
        &mut self,
        kind: ProblemKind,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.problems.push(Problem {
            kind,
            subject: subject.into(),
            detail: detail.into(),
        });
    }
}
