//! Readers of the real dataset layouts. Each turns a declared dataset into a [`Catalog`]:
//! items with labels, groups and attributes, and a [`crate::Problem`] for every row or
//! file that does not fit (never a crash, never a silent drop).

mod attributes;
mod csv_images;
mod folder;
pub(crate) mod isic;
pub(crate) mod siim;
mod yolo;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine_core::manifest::{Dataset as DatasetSpec, DatasetFormat};

use crate::DataError;
use crate::item::{Catalog, ProblemKind};
use crate::salt::Salt;

pub use attributes::attach_attribute_table;

/// Extensions of the image files the readers pick up (lower case).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Image files including DICOM, for the layouts that may hold either.
pub const ANY_IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "dcm"];

/// Keeps the images of the classes `keep`, which become the catalog's classes in that order.
fn keep_classes(catalog: &mut Catalog, keep: &[String]) -> Result<(), DataError> {
    let mut new_index = vec![None; catalog.classes.len()];
    for (i, name) in keep.iter().enumerate() {
        match catalog.classes.iter().position(|c| c == name) {
            Some(old) => new_index[old] = Some(i),
            None => {
                return Err(DataError::new(format!(
                    "`classes` names `{name}`, which is not a class of the dataset"
                ))
                .hint(format!("its classes are {}", catalog.classes.join(", "))));
            }
        }
    }
    let before = catalog.items.len();
    catalog.items.retain(|item| new_index[item.class].is_some());
    for item in &mut catalog.items {
        item.class = new_index[item.class].unwrap_or(0);
    }
    let left_out = before - catalog.items.len();
    if left_out > 0 {
        catalog.notes.push(format!(
            "`classes` keeps {}; {left_out} images of the other classes are left out",
            keep.join(", ")
        ));
    }
    catalog.classes = keep.to_vec();
    Ok(())
}

/// Indexes the dataset declared by `spec` whose root is `root` (already resolved against
/// the manifest's directory).
pub fn read(spec: &DatasetSpec, root: &Path, salt: &Salt) -> Result<Catalog, DataError> {
    if !root.is_dir() {
        return Err(DataError::new(format!(
            "the dataset's root {} is not a directory",
            root.display()
        ))
        .hint("check `root` (relative to the manifest's directory)"));
    }
    let mut catalog = match spec.format {
        DatasetFormat::Files => {
            return Err(DataError::new(
                "a dataset of format `files` has no images or labels the engine can read",
            )
            .hint("declare its layout: `folder-per-class`, `csv-images`, `isic2019`, `yolo` or `siim-acr`"));
        }
        DatasetFormat::FolderPerClass => folder::read(root, salt)?,
        DatasetFormat::CsvImages => csv_images::read(spec, root, salt)?,
        DatasetFormat::Isic2019 => isic::read(spec, root, salt)?,
        DatasetFormat::Yolo => yolo::read(spec, root, salt)?,
        DatasetFormat::SiimAcr => siim::read(spec, root, salt)?,
    };
    if let Some(keep) = &spec.classes {
        keep_classes(&mut catalog, keep)?;
    }
    for (name, source) in &spec.attributes {
        let column = source.column.clone().unwrap_or_else(|| name.clone());
        attributes::attach(
            &mut catalog,
            &root.join(&source.file),
            &source.id_column,
            &[(name.clone(), column)],
        )?;
    }
    catalog.attributes = spec.attributes.keys().cloned().collect();
    finish(&mut catalog);
    if catalog.items.is_empty() {
        let found = if catalog.problems.is_empty() {
            String::new()
        } else {
            format!(
                " ({} problems found, first: {}: {})",
                catalog.problems.len(),
                catalog.problems[0].subject,
                catalog.problems[0].detail
            )
        };
        return Err(DataError::new(format!(
            "no labelled images found in {} as `{}`{found}",
            root.display(),
            spec.format.as_str()
        ))
        .hint(layout_hint(spec.format)));
    }
    Ok(catalog)
}

/// Sorts the items by id and keeps the first of any duplicate id.
fn finish(catalog: &mut Catalog) {
    catalog
        .items
        .sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.path.cmp(&b.path)));
    let mut kept: Vec<crate::Item> = Vec::with_capacity(catalog.items.len());
    let mut dups = Vec::new();
    for item in std::mem::take(&mut catalog.items) {
        match kept.last() {
            Some(prev) if prev.id == item.id => dups.push(item),
            _ => kept.push(item),
        }
    }
    catalog.items = kept;
    for d in dups {
        let (subject, detail) = if catalog.sensitive_ids {
            (
                catalog.shown_id(&d.id),
                "a second image with this id; only the first is used".to_owned(),
            )
        } else {
            (
                d.path.display().to_string(),
                format!("a second image with id `{}`; only the first is used", d.id),
            )
        };
        catalog.problem(ProblemKind::BadRow, subject, detail);
    }
}

/// How each layout looks, for the hint of an empty dataset.
pub fn layout_hint(format: DatasetFormat) -> &'static str {
    match format {
        DatasetFormat::Files => "",
        DatasetFormat::FolderPerClass => {
            "put each class's images (PNG or JPEG) in a directory named after the class"
        }
        DatasetFormat::CsvImages => {
            "the labels CSV needs one row per image: its path under the root and its label"
        }
        DatasetFormat::Isic2019 => {
            "expected ISIC_2019_Training_GroundTruth.csv (image plus one-hot class columns) and the images it names (ISIC_*.jpg) under the root"
        }
        DatasetFormat::Yolo => {
            "expected images/ with the images, labels/ with one `class cx cy w h` file per boxed image, a class map (data.yaml or classes.txt), and image_labels.csv for unboxed images"
        }
        DatasetFormat::SiimAcr => {
            "expected DICOM files (*.dcm) under the root and train-rle.csv with `ImageId, EncodedPixels` (-1 for none)"
        }
    }
}

/// Every file under `dir` (recursively) whose extension is in `exts`, as paths relative to
/// `root`, sorted.
pub fn list_files(root: &Path, dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| has_extension(e.path(), exts))
        .filter_map(|e| e.path().strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    out.sort();
    out
}

pub(crate) fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The id of an image file: its name without extension.
pub(crate) fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Image files by id; a second file with an id already seen is a problem.
pub(crate) fn index_by_stem(
    catalog: &mut Catalog,
    files: Vec<PathBuf>,
) -> BTreeMap<String, PathBuf> {
    let mut map: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        let id = stem(&f);
        if let Some(first) = map.get(&id) {
            let (subject, detail) = if catalog.sensitive_ids {
                (
                    catalog.shown_id(&id),
                    "a second file with this image id; only the first is used".to_owned(),
                )
            } else {
                (
                    f.display().to_string(),
                    format!(
                        "has the same id as {}; only that one is used",
                        first.display()
                    ),
                )
            };
            catalog.problem(ProblemKind::BadRow, subject, detail);
        } else {
            map.insert(id, f);
        }
    }
    map
}

/// The file a label row names: a path under the root, or an id (a file name with or
/// without extension) looked up in `by_stem`.
pub(crate) fn resolve(
    root: &Path,
    by_stem: &BTreeMap<String, PathBuf>,
    name: &str,
) -> Option<PathBuf> {
    let direct = Path::new(name);
    if !direct.is_absolute() && !name.contains("..") && root.join(direct).is_file() {
        return Some(direct.to_path_buf());
    }
    by_stem
        .get(name)
        .or_else(|| by_stem.get(&stem(direct)))
        .cloned()
}

/// Orders two class names so that the negative one comes first (`normal`, `no_x`, `benign`...).
pub(crate) fn order_binary(classes: &mut [String]) {
    if classes.len() != 2 {
        return;
    }
    let negative = |c: &str| {
        let c = c.to_ascii_lowercase();
        [
            "no_", "no-", "no ", "non", "not", "normal", "negative", "benign", "healthy", "absent",
            "none", "0", "false",
        ]
        .iter()
        .any(|p| c.starts_with(p))
    };
    if negative(&classes[1]) && !negative(&classes[0]) {
        classes.swap(0, 1);
    }
}

/// A new, empty catalog.
pub(crate) fn catalog(
    format: DatasetFormat,
    salt: &Salt,
    root: &Path,
    target: &str,
    classes: Vec<String>,
) -> Catalog {
    Catalog {
        salt: salt.clone(),
        format,
        root: root.to_path_buf(),
        target: target.to_owned(),
        classes,
        box_classes: Vec::new(),
        attributes: Vec::new(),
        sensitive_ids: false,
        notes: Vec::new(),
        problems: Vec::new(),
        items: Vec::new(),
    }
}

/// Reads a 0/1 label ("0", "1", "0.0", "1.0", "true", "false").
pub(crate) fn binary_value(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" => Some(true),
        "0" | "0.0" | "false" | "no" => Some(false),
        _ => None,
    }
}
