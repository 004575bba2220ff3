//! CSV of images: one row per image with its path (or id) and its label, optionally a
//! patient column (NEATX drain labels, for example: `image_id,drain`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use engine_core::manifest::{Dataset as DatasetSpec, DatasetFormat};

use super::{
    ANY_IMAGE_EXTENSIONS, binary_value, catalog, index_by_stem, list_files, order_binary, resolve,
    stem,
};
use crate::DataError;
use crate::item::{Catalog, Item, ProblemKind};
use crate::table::Table;

/// Column names tried, in order, when `image_column` is not set.
const IMAGE_COLUMNS: &[&str] = &["image", "image_id", "path", "file", "filename"];

pub(crate) fn read(
    spec: &DatasetSpec,
    root: &Path,
    salt: &crate::salt::Salt,
) -> Result<Catalog, DataError> {
    let labels = spec.labels.as_deref().ok_or_else(|| {
        DataError::new(
            "a `csv-images` dataset needs `labels`, the CSV naming each image and its label",
        )
    })?;
    let target = spec
        .target
        .as_deref()
        .ok_or_else(|| DataError::new("a `csv-images` dataset needs `target`, the label column"))?;
    let table = Table::read(&root.join(labels))?;
    let image_col = match &spec.image_column {
        Some(c) => table.require(c, "set `image_column` to the column naming the images")?,
        None => IMAGE_COLUMNS
            .iter()
            .find_map(|c| table.col(c))
            .ok_or_else(|| {
                DataError::new(format!(
                    "{} has none of the columns {} that name images",
                    table.path.display(),
                    IMAGE_COLUMNS
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .hint("set `image_column` to the column naming the images")
            })?,
    };
    let target_col = table.require(target, "set `target` to the label column")?;
    let patient_col = match &spec.patient_column {
        Some(c) => Some(table.require(
            c,
            "set `patient_column` to the column of patient ids, or remove it",
        )?),
        None => table.col("patient_id"),
    };

    // The classes: 0/1 values make a binary label named after the column; anything else
    // is a class name.
    let values: Vec<&str> = table
        .rows
        .iter()
        .map(|r| Table::field(r, target_col))
        .filter(|v| !v.is_empty())
        .collect();
    let binary = !values.is_empty() && values.iter().all(|v| binary_value(v).is_some());
    let classes: Vec<String> = if binary {
        vec![format!("no_{target}"), target.to_owned()]
    } else {
        let mut c: Vec<String> = values
            .iter()
            .map(|v| (*v).to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        order_binary(&mut c);
        c
    };
    let mut cat = catalog(DatasetFormat::CsvImages, salt, root, target, classes);
    let files = list_files(root, root, ANY_IMAGE_EXTENSIONS);
    cat.sensitive_ids = files.iter().any(|f| super::has_extension(f, &["dcm"]));
    let by_stem = index_by_stem(&mut cat, files);
    let mut used: BTreeMap<String, ()> = BTreeMap::new();
    for row in &table.rows {
        let name = Table::field(row, image_col);
        let value = Table::field(row, target_col);
        if name.is_empty() {
            cat.problem(ProblemKind::BadRow, table.at(row), "names no image");
            continue;
        }
        let class = if binary {
            binary_value(value).map(usize::from)
        } else {
            cat.classes.iter().position(|c| c == value)
        };
        let Some(class) = class else {
            cat.problem(
                ProblemKind::BadRow,
                table.at(row),
                format!("image `{name}` has no label in `{target}`"),
            );
            // The image has a row (a bad one, just reported): not also "no row".
            if let Some(path) = resolve(root, &by_stem, name) {
                used.insert(stem(&path), ());
            }
            continue;
        };
        let Some(path) = resolve(root, &by_stem, name) else {
            cat.problem(
                ProblemKind::LabelWithoutImage,
                table.at(row),
                format!("names `{name}`, which is not an image under the root"),
            );
            continue;
        };
        used.insert(stem(&path), ());
        cat.items.push(Item {
            id: stem(&path),
            path,
            patient: patient_col
                .map(|c| Table::field(row, c))
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            lesion: None,
            class,
            boxes: None,
            has_mask: false,
            attributes: Default::default(),
        });
    }
    for (id, path) in &by_stem {
        if !used.contains_key(id) {
            cat.problem(
                ProblemKind::ImageWithoutLabel,
                path.display().to_string(),
                format!("has no row in {}", table.file_name()),
            );
        }
    }
    Ok(cat)
}
