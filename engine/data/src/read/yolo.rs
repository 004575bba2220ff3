//! YOLO boxes in the GRAZPEDWRI-DX style: `images/` (PNG or JPEG), `labels/` with one
//! `class cx cy w h` line per box (normalised) for every boxed image, a class map
//! (`data.yaml` with `names`, or `classes.txt`), and `image_labels.csv` (`image_id`, the
//! target column, optionally `patient_id`) with the image-level labels of images that have
//! no box file. A box file, even an empty one, makes an image boxed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use engine_core::manifest::{Dataset as DatasetSpec, DatasetFormat};

use super::{IMAGE_EXTENSIONS, binary_value, catalog, index_by_stem, list_files, stem};
use crate::DataError;
use crate::item::{BoxAnn, Catalog, Item, ProblemKind};
use crate::table::{Table, io_reason};

/// The image-level labels file read when present and `labels` is not set.
pub const IMAGE_LABELS: &str = "image_labels.csv";

pub(crate) fn read(
    spec: &DatasetSpec,
    root: &Path,
    salt: &crate::salt::Salt,
) -> Result<Catalog, DataError> {
    let box_classes = class_map(root)?;
    let target = match &spec.target {
        Some(t) => {
            if !box_classes.contains(t) {
                return Err(DataError::new(format!(
                    "`target: {t}` is not in the class map; its classes are {}",
                    box_classes
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .hint("name the class whose boxes make an image positive"));
            }
            t.clone()
        }
        None if box_classes.iter().any(|c| c == "fracture") => "fracture".into(),
        None => box_classes[0].clone(),
    };
    let target_index = box_classes.iter().position(|c| *c == target).unwrap_or(0);
    let mut cat = catalog(
        DatasetFormat::Yolo,
        salt,
        root,
        &target,
        vec![format!("no_{target}"), target.clone()],
    );
    cat.box_classes = box_classes;
    let images_dir = root.join("images");
    if !images_dir.is_dir() {
        return Err(
            DataError::new(format!("{} has no `images/` directory", root.display()))
                .hint(super::layout_hint(DatasetFormat::Yolo)),
        );
    }
    let files = list_files(root, &images_dir, IMAGE_EXTENSIONS);
    let by_stem = index_by_stem(&mut cat, files);
    let labels_dir = root.join("labels");
    let label_files: BTreeMap<String, PathBuf> = list_files(root, &labels_dir, &["txt"])
        .into_iter()
        .map(|p| (stem(&p), p))
        .collect();

    // Image-level labels (and patient ids), when there are any.
    let mut image_level: BTreeMap<String, (Option<bool>, Option<String>, String)> = BTreeMap::new();
    let labels_path = root.join(spec.labels.as_deref().unwrap_or(IMAGE_LABELS));
    let mut level_file = None;
    if spec.labels.is_some() || labels_path.is_file() {
        let t = Table::read(&labels_path)?;
        let ic = t.require(
            "image_id",
            "image-level labels name each image in `image_id`",
        )?;
        let vc = t.require(
            &target,
            &format!(
                "image-level labels hold the label in a column named after the target, `{target}`"
            ),
        )?;
        let pc = match &spec.patient_column {
            Some(c) => Some(t.require(
                c,
                "set `patient_column` to the column of patient ids, or remove it",
            )?),
            None => t.col("patient_id"),
        };
        for row in &t.rows {
            let id = stem(Path::new(Table::field(row, ic)));
            let value = binary_value(Table::field(row, vc));
            if value.is_none() {
                cat.problem(
                    ProblemKind::BadRow,
                    t.at(row),
                    format!("`{target}` of `{id}` is not 0 or 1"),
                );
            }
            let patient = pc
                .map(|c| Table::field(row, c))
                .filter(|p| !p.is_empty())
                .map(str::to_owned);
            image_level.insert(id, (value, patient, t.at(row)));
        }
        level_file = Some(t.file_name());
    }

    let mut seen = BTreeSet::new();
    for (id, path) in &by_stem {
        seen.insert(id.clone());
        let level = image_level.get(id);
        let patient = level.and_then(|l| l.1.clone());
        let (boxes, positive) = match label_files.get(id) {
            Some(lf) => match read_boxes(&root.join(lf), cat.box_classes.len()) {
                Ok(boxes) => {
                    let positive = boxes.iter().any(|b| b.class == target_index);
                    if let Some((Some(v), _, at)) = level
                        && *v != positive
                    {
                        cat.problem(
                            ProblemKind::BadRow,
                            at.clone(),
                            format!("says `{target}` is {} for `{id}` but its boxes say {}; the boxes are used", u8::from(*v), u8::from(positive)),
                        );
                    }
                    (Some(boxes), positive)
                }
                Err(e) => {
                    cat.problem(ProblemKind::BadRow, lf.display().to_string(), e);
                    continue;
                }
            },
            None => match level {
                Some((Some(v), _, _)) => (None, *v),
                Some((None, _, _)) => continue,
                None => {
                    let why = match &level_file {
                        Some(f) => format!("has no box file in labels/ and no row in {f}"),
                        None => {
                            format!("has no box file in labels/ (and there is no {IMAGE_LABELS})")
                        }
                    };
                    cat.problem(
                        ProblemKind::ImageWithoutLabel,
                        path.display().to_string(),
                        why,
                    );
                    continue;
                }
            },
        };
        cat.items.push(Item {
            id: id.clone(),
            path: path.clone(),
            patient,
            lesion: None,
            class: usize::from(positive),
            boxes,
            has_mask: false,
            attributes: Default::default(),
        });
    }
    for (id, lf) in &label_files {
        if !seen.contains(id) {
            cat.problem(
                ProblemKind::LabelWithoutImage,
                lf.display().to_string(),
                "has no image in images/",
            );
        }
    }
    for (id, (_, _, at)) in &image_level {
        if !seen.contains(id) {
            cat.problem(
                ProblemKind::LabelWithoutImage,
                at.clone(),
                format!("names `{id}`, which is not in images/"),
            );
        }
    }
    Ok(cat)
}

/// The class map: `data.yaml`'s `names` (a list, or a map from index to name), else
/// `classes.txt` (one name per line).
fn class_map(root: &Path) -> Result<Vec<String>, DataError> {
    let yaml = root.join("data.yaml");
    let txt = root.join("classes.txt");
    if yaml.is_file() {
        let text = std::fs::read_to_string(&yaml).map_err(|e| {
            DataError::new(format!("cannot read {}: {}", yaml.display(), io_reason(&e)))
        })?;
        let value: serde_json::Value = serde_norway::from_str(&text)
            .map_err(|e| DataError::new(format!("{} is not YAML: {e}", yaml.display())))?;
        let names = match value.get("names") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>(),
            Some(serde_json::Value::Object(m)) => {
                let mut pairs: Vec<(usize, String)> = Vec::new();
                for (k, v) in m {
                    match (k.parse::<usize>(), v.as_str()) {
                        (Ok(i), Some(n)) => pairs.push((i, n.to_owned())),
                        _ => {
                            return Err(DataError::new(format!(
                                "{}: `names` maps class indices to names; `{k}` is not an index",
                                yaml.display()
                            )));
                        }
                    }
                }
                pairs.sort();
                pairs
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| i == *k)
                    .then(|| pairs.into_iter().map(|(_, n)| n).collect())
            }
            _ => None,
        };
        match names {
            Some(n) if !n.is_empty() => Ok(n),
            _ => Err(DataError::new(format!(
                "{} has no usable `names` (a list of class names)",
                yaml.display()
            ))
            .hint("write `names: [fracture]`, one name per class index")),
        }
    } else if txt.is_file() {
        let text = std::fs::read_to_string(&txt).map_err(|e| {
            DataError::new(format!("cannot read {}: {}", txt.display(), io_reason(&e)))
        })?;
        let names: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err(DataError::new(format!("{} names no class", txt.display())));
        }
        Ok(names)
    } else {
        Err(DataError::new(format!(
            "{} has no class map (data.yaml or classes.txt)",
            root.display()
        ))
        .hint("write classes.txt with one class name per line, in class-index order"))
    }
}

/// Reads one YOLO box file.
fn read_boxes(path: &Path, n_classes: usize) -> Result<Vec<BoxAnn>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {}", io_reason(&e)))?;
    let mut boxes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = |why: &str| format!("line {}: {why} (expected `class cx cy w h`)", i + 1);
        if fields.len() != 5 {
            return Err(bad(&format!("{} fields", fields.len())));
        }
        let class: usize = fields[0]
            .parse()
            .map_err(|_| bad(&format!("class `{}` is not an index", fields[0])))?;
        if class >= n_classes {
            return Err(bad(&format!(
                "class {class} is not in the class map of {n_classes}"
            )));
        }
        let mut v = [0f32; 4];
        for (k, f) in fields[1..].iter().enumerate() {
            v[k] = f
                .parse()
                .map_err(|_| bad(&format!("`{f}` is not a number")))?;
        }
        let [cx, cy, w, h] = v;
        let unit = |v: f32| (0.0..=1.0).contains(&v);
        if !(unit(cx) && unit(cy) && w > 0.0 && unit(w) && h > 0.0 && unit(h)) {
            return Err(bad(
                "coordinates must be normalised to 0..1, with a positive width and height",
            ));
        }
        boxes.push(BoxAnn {
            class,
            cx,
            cy,
            w,
            h,
        });
    }
    Ok(boxes)
}
