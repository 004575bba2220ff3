//! Attribute CSVs: a value per image (0/1 or a probability) such as NEATX-style chest-drain
//! labels, or the predictions of a `model.predict` stage.

use std::collections::BTreeMap;
use std::path::Path;

use super::stem;
use crate::DataError;
use crate::item::{Catalog, ProblemKind};
use crate::table::Table;

/// Reads the attributes `(name, column)` from the CSV at `path`, whose `id_column` names the
/// images, into the catalog's items.
pub(crate) fn attach(
    catalog: &mut Catalog,
    path: &Path,
    id_column: &str,
    attributes: &[(String, String)],
) -> Result<(), DataError> {
    let table = Table::read(path)?;
    let id_col = table.require(
        id_column,
        "set the attribute's `id_column` to the column naming the images",
    )?;
    let mut cols = Vec::new();
    for (name, column) in attributes {
        let c = table.require(
            column,
            &format!("set the attribute's `column` to the column holding `{name}`"),
        )?;
        cols.push((name.clone(), c));
    }
    // Stages write DICOM identifiers as their salted hashes (`Catalog::shown_id`).
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, item) in catalog.items.iter().enumerate() {
        index.insert(item.id.clone(), i);
        if catalog.sensitive_ids {
            index.insert(catalog.shown_id(&item.id), i);
        }
    }
    let mut problems = Vec::new();
    for row in &table.rows {
        let id = Table::field(row, id_col);
        let Some(&i) = index.get(id).or_else(|| index.get(&stem(Path::new(id)))) else {
            problems.push((
                ProblemKind::AttributeWithoutImage,
                table.at(row),
                format!("names `{id}`, which is not an image of the dataset"),
            ));
            continue;
        };
        for (name, c) in &cols {
            let text = Table::field(row, *c);
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    catalog.items[i].attributes.insert(name.clone(), v);
                }
                _ if text.is_empty() => {}
                _ => problems.push((
                    ProblemKind::BadRow,
                    table.at(row),
                    format!("`{name}` is `{text}`, not a number"),
                )),
            }
        }
    }
    for (kind, subject, detail) in problems {
        catalog.problem(kind, subject, detail);
    }
    Ok(())
}

/// Reads every column but `image_id` of an `attributes.csv` written by a stage (for example
/// predicted drain probabilities) as attributes of the catalog's items; returns their names.
pub fn attach_attribute_table(
    catalog: &mut Catalog,
    path: &Path,
) -> Result<Vec<String>, DataError> {
    let table = Table::read(path)?;
    table.require(
        "image_id",
        "a stage's attributes.csv names each image in `image_id`",
    )?;
    let names: Vec<(String, String)> = table
        .header
        .iter()
        .filter(|h| *h != "image_id")
        .map(|h| (h.clone(), h.clone()))
        .collect();
    attach(catalog, path, "image_id", &names)?;
    let mut out: Vec<String> = names.into_iter().map(|(n, _)| n).collect();
    for n in &out {
        if !catalog.attributes.contains(n) {
            catalog.attributes.push(n.clone());
        }
    }
    catalog.attributes.sort();
    out.sort();
    Ok(out)
}
