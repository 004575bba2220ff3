//! Folder-per-class: `ROOT/<class>/<image>`; images may sit in subdirectories of a class.

use std::path::Path;

use engine_core::manifest::DatasetFormat;

use super::{ANY_IMAGE_EXTENSIONS, catalog, list_files, order_binary, stem};
use crate::DataError;
use crate::item::{Catalog, Item, ProblemKind};
use crate::table::io_reason;

pub(crate) fn read(root: &Path, salt: &crate::salt::Salt) -> Result<Catalog, DataError> {
    let entries = std::fs::read_dir(root).map_err(|e| {
        DataError::new(format!("cannot list {}: {}", root.display(), io_reason(&e)))
    })?;
    let mut class_dirs: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.'))
        .collect();
    class_dirs.sort();
    let mut files_by_class = Vec::new();
    for class in &class_dirs {
        let files = list_files(root, &root.join(class), ANY_IMAGE_EXTENSIONS);
        if !files.is_empty() {
            files_by_class.push((class.clone(), files));
        }
    }
    let mut classes: Vec<String> = files_by_class.iter().map(|(c, _)| c.clone()).collect();
    order_binary(&mut classes);
    let mut cat = catalog(DatasetFormat::FolderPerClass, salt, root, "class", classes);
    cat.sensitive_ids = files_by_class
        .iter()
        .flat_map(|(_, f)| f)
        .any(|f| super::has_extension(f, &["dcm"]));
    for dir in &class_dirs {
        if !files_by_class.iter().any(|(c, _)| c == dir) {
            cat.notes.push(format!(
                "directory `{dir}` holds no images and is not a class"
            ));
        }
    }
    for loose in list_files(root, root, ANY_IMAGE_EXTENSIONS) {
        if loose.components().count() == 1 {
            cat.problem(
                ProblemKind::ImageWithoutLabel,
                loose.display().to_string(),
                "lies directly in the root, outside every class directory",
            );
        }
    }
    for (class, files) in files_by_class {
        let index = cat.classes.iter().position(|c| *c == class).unwrap_or(0);
        for f in files {
            cat.items.push(Item {
                id: stem(&f),
                path: f,
                patient: None,
                lesion: None,
                class: index,
                boxes: None,
                has_mask: false,
                attributes: Default::default(),
            });
        }
    }
    if cat.classes.len() < 2 {
        return Err(DataError::new(format!(
            "{} has {} class director{} with images; a classifier needs at least two",
            root.display(),
            cat.classes.len(),
            if cat.classes.len() == 1 { "y" } else { "ies" }
        ))
        .hint(super::layout_hint(DatasetFormat::FolderPerClass)));
    }
    Ok(cat)
}
