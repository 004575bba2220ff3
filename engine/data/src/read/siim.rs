//! SIIM-ACR pneumothorax: DICOM files anywhere under the root (named `<SOPInstanceUID>.dcm`)
//! and `train-rle.csv` with `ImageId, EncodedPixels`: `-1` for no pneumothorax, otherwise a
//! run-length-encoded mask, possibly several rows per image. Patients come from each file's
//! `PatientID`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use engine_core::manifest::{Dataset as DatasetSpec, DatasetFormat};

use super::{catalog, index_by_stem, list_files};
use crate::DataError;
use crate::item::{Catalog, Item, ProblemKind};
use crate::salt::Salt;
use crate::table::Table;

/// The labels file's name in the SIIM-ACR download.
pub const RLE_CSV: &str = "train-rle.csv";

pub(crate) fn read(spec: &DatasetSpec, root: &Path, salt: &Salt) -> Result<Catalog, DataError> {
    let table = Table::read(&root.join(spec.labels.as_deref().unwrap_or(RLE_CSV)))?;
    let id_col = table.require("ImageId", "SIIM-ACR's labels name each image in `ImageId`")?;
    let rle_col = table.require(
        "EncodedPixels",
        "SIIM-ACR's labels hold the masks in `EncodedPixels` (-1 for none)",
    )?;
    let mut cat = catalog(
        DatasetFormat::SiimAcr,
        salt,
        root,
        "pneumothorax",
        vec!["no_pneumothorax".into(), "pneumothorax".into()],
    );
    cat.sensitive_ids = true;
    // Per image: whether any row has a mask, and whether every row could be read.
    let mut labels: BTreeMap<String, (bool, String)> = BTreeMap::new();
    let mut bad_ids = BTreeSet::new();
    for row in &table.rows {
        let id = Table::field(row, id_col).to_owned();
        if id.is_empty() {
            cat.problem(ProblemKind::BadRow, table.at(row), "names no image");
            continue;
        }
        match crate::rle::parse(Table::field(row, rle_col)) {
            Ok(mask) => {
                let entry = labels.entry(id).or_insert((false, table.at(row)));
                entry.0 |= mask.is_some();
            }
            Err(e) => {
                cat.problem(
                    ProblemKind::BadRow,
                    table.at(row),
                    format!("EncodedPixels {e}"),
                );
                bad_ids.insert(id);
            }
        }
    }
    let files = list_files(root, root, &["dcm"]);
    let by_stem = index_by_stem(&mut cat, files);
    let headers = read_headers(root, &by_stem);
    for ((id, path), header) in by_stem.iter().zip(headers) {
        let shown = cat.shown_id(id);
        let Some((positive, _)) = labels.get(id) else {
            if !bad_ids.contains(id) {
                cat.problem(
                    ProblemKind::ImageWithoutLabel,
                    shown,
                    format!("has no row in {}", table.file_name()),
                );
            }
            continue;
        };
        if bad_ids.contains(id) {
            continue;
        }
        let header = match header {
            Ok(h) => h,
            Err(e) => {
                cat.problem(ProblemKind::Unreadable, shown, e);
                continue;
            }
        };
        cat.items.push(Item {
            id: id.clone(),
            path: path.clone(),
            patient: header.patient_id,
            lesion: None,
            class: usize::from(*positive),
            boxes: None,
            has_mask: *positive,
            attributes: Default::default(),
        });
    }
    for (id, (_, at)) in &labels {
        if !by_stem.contains_key(id) {
            let shown = cat.shown_id(id);
            cat.problem(
                ProblemKind::LabelWithoutImage,
                at.clone(),
                format!("names image {shown}, which has no DICOM file under the root"),
            );
        }
    }
    Ok(cat)
}

/// Reads every file's header, on all cores.
fn read_headers(
    root: &Path,
    files: &BTreeMap<String, PathBuf>,
) -> Vec<Result<crate::dicom::Header, String>> {
    let paths: Vec<PathBuf> = files.values().map(|p| root.join(p)).collect();
    crate::par::map(&paths, |p| crate::dicom::read_header(p))
}
