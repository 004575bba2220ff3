//! ISIC 2019: `ISIC_2019_Training_GroundTruth.csv` (`image` plus one-hot columns `MEL, NV,
//! BCC, AK, BKL, DF, VASC, SCC, UNK`), `ISIC_2019_Training_Metadata.csv` (`image`,
//! `lesion_id`, ...), and the JPEGs it names anywhere under the root.

use std::collections::BTreeMap;
use std::path::Path;

use engine_core::manifest::{Dataset as DatasetSpec, DatasetFormat};

use super::{IMAGE_EXTENSIONS, catalog, index_by_stem, list_files, resolve, stem};
use crate::DataError;
use crate::item::{Catalog, Item, ProblemKind};
use crate::table::Table;

/// The ground-truth CSV's name in the ISIC 2019 download.
pub const GROUND_TRUTH: &str = "ISIC_2019_Training_GroundTruth.csv";
/// The metadata CSV's name in the ISIC 2019 download.
pub const METADATA: &str = "ISIC_2019_Training_Metadata.csv";

pub(crate) fn read(
    spec: &DatasetSpec,
    root: &Path,
    salt: &crate::salt::Salt,
) -> Result<Catalog, DataError> {
    let gt = Table::read(&root.join(spec.labels.as_deref().unwrap_or(GROUND_TRUTH)))?;
    let image_col = gt.require("image", "ISIC's ground truth starts with an `image` column")?;
    let class_cols: Vec<(usize, String)> = gt
        .header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != image_col)
        .map(|(i, h)| (i, h.clone()))
        .collect();
    if class_cols.len() < 2 {
        return Err(DataError::new(format!(
            "{} has {} class column(s); ISIC's ground truth has one column per class (MEL, NV, ...)",
            gt.path.display(),
            class_cols.len()
        )));
    }
    // Read every row's one-hot class first, so that classes no image has can be left out.
    let mut rows: Vec<(usize, &str, usize)> = Vec::new();
    let mut bad: Vec<(String, String)> = Vec::new();
    // Images named by rows that cannot be read: reported as such, not also as without a row.
    let mut bad_images: Vec<&str> = Vec::new();
    for (r, row) in gt.rows.iter().enumerate() {
        let image = Table::field(row, image_col);
        let mut hot = Vec::new();
        let mut unreadable = None;
        for (k, (col, name)) in class_cols.iter().enumerate() {
            match Table::field(row, *col).parse::<f64>() {
                Ok(v) if v >= 0.5 => hot.push(k),
                Ok(_) => {}
                Err(_) => unreadable = Some(name.clone()),
            }
        }
        if unreadable.is_some() || hot.len() != 1 {
            bad_images.push(image);
        }
        match (unreadable, hot.as_slice()) {
            (Some(col), _) => bad.push((
                gt.at(row),
                format!("`{col}` of image `{image}` is not a number"),
            )),
            (None, [k]) => rows.push((r, image, *k)),
            (None, []) => bad.push((gt.at(row), format!("image `{image}` has no class"))),
            (None, _) => bad.push((
                gt.at(row),
                format!(
                    "image `{image}` has {} classes; ISIC's labels are one-hot",
                    hot.len()
                ),
            )),
        }
    }
    let mut counts = vec![0usize; class_cols.len()];
    for (_, _, k) in &rows {
        counts[*k] += 1;
    }
    let kept: Vec<usize> = (0..class_cols.len()).filter(|k| counts[*k] > 0).collect();
    let classes: Vec<String> = kept.iter().map(|k| class_cols[*k].1.clone()).collect();
    let mut cat = catalog(DatasetFormat::Isic2019, salt, root, "diagnosis", classes);
    for (k, (_, name)) in class_cols.iter().enumerate() {
        if counts[k] == 0 {
            cat.notes
                .push(format!("class `{name}` has no images and is left out"));
        }
    }
    for (subject, detail) in bad {
        cat.problem(ProblemKind::BadRow, subject, detail);
    }

    // Lesion (and patient) ids from the metadata, when there is one.
    let meta_name = spec.metadata.as_deref().unwrap_or(METADATA);
    let meta_path = root.join(meta_name);
    let mut lesions: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    if spec.metadata.is_some() || meta_path.is_file() {
        let meta = Table::read(&meta_path)?;
        let mi = meta.require("image", "ISIC's metadata starts with an `image` column")?;
        let li = meta.col("lesion_id");
        let pi = match &spec.patient_column {
            Some(c) => Some(meta.require(
                c,
                "set `patient_column` to the metadata's column of patient ids, or remove it",
            )?),
            None => meta.col("patient_id"),
        };
        if li.is_none() && pi.is_none() {
            cat.notes.push(format!(
                "{} has no `lesion_id` column; images are split one by one",
                meta.file_name()
            ));
        }
        let pick = |row, c: Option<usize>| {
            c.map(|c| Table::field(row, c))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        for row in &meta.rows {
            lesions.insert(
                Table::field(row, mi).to_owned(),
                (pick(row, li), pick(row, pi)),
            );
        }
    } else {
        cat.notes.push(format!(
            "no {METADATA}: no lesion ids, so images are split one by one"
        ));
    }

    let files = list_files(root, root, IMAGE_EXTENSIONS);
    let by_stem = index_by_stem(&mut cat, files);
    let mut used = std::collections::BTreeSet::new();
    for image in bad_images {
        if let Some(path) = resolve(root, &by_stem, image) {
            used.insert(stem(&path));
        }
    }
    for (r, image, k) in rows {
        let row = &gt.rows[r];
        let Some(path) = resolve(root, &by_stem, image) else {
            cat.problem(
                ProblemKind::LabelWithoutImage,
                gt.at(row),
                format!("names `{image}`, which is not an image under the root"),
            );
            continue;
        };
        let (lesion, patient) = lesions.get(image).cloned().unwrap_or((None, None));
        used.insert(stem(&path));
        cat.items.push(Item {
            id: stem(&path),
            path,
            patient,
            lesion,
            class: kept.iter().position(|x| *x == k).unwrap_or(0),
            boxes: None,
            has_mask: false,
            attributes: Default::default(),
        });
    }
    for (id, path) in &by_stem {
        if !used.contains(id) {
            cat.problem(
                ProblemKind::ImageWithoutLabel,
                path.display().to_string(),
                format!("has no row in {}", gt.file_name()),
            );
        }
    }
    Ok(cat)
}
