//! Reading COCO detection files: a ground truth (`images`, `annotations`, `categories`)
//! and detections in the COCO results format (an array of
//! `{image_id, category_id, bbox, score}`), checked so that every box can be evaluated.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::diag::{Diagnostic, Mark};

use super::detection::{Category, DetBox, GroundTruth, GtBox};
use super::error::InputError;

/// The largest COCO file read (2 GiB).
const MAX_BYTES: u64 = 2 << 30;

#[derive(Deserialize)]
struct GtFile {
    images: Vec<ImageEntry>,
    annotations: Vec<AnnotationEntry>,
    categories: Vec<CategoryEntry>,
}

#[derive(Deserialize)]
struct ImageEntry {
    id: i64,
}

#[derive(Deserialize)]
struct CategoryEntry {
    id: i64,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct AnnotationEntry {
    id: i64,
    image_id: i64,
    category_id: i64,
    bbox: [f64; 4],
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Deserialize)]
struct DetectionEntry {
    image_id: i64,
    category_id: i64,
    bbox: [f64; 4],
    score: f64,
}

/// Reads a file as JSON into `T`, with errors at their line and column and the JSON path.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, shape: &str) -> Result<T, InputError> {
    let file_error = |message: String, hint: &str| -> InputError {
        Diagnostic::new(path, Mark::FILE, message).hint(hint).into()
    };
    let size = std::fs::metadata(path)
        .map_err(|e| file_error(format!("cannot read the file: {e}"), "check the path"))?
        .len();
    if size > MAX_BYTES {
        return Err(file_error(
            format!("the file is {size} bytes, more than the 2 GiB allowed"),
            "check that this is the right file",
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        file_error(
            format!("cannot read the file: {e}"),
            "check the path, and that the file is UTF-8 JSON",
        )
    })?;
    if text.trim().is_empty() {
        return Err(file_error("the file is empty".into(), shape));
    }
    let de = &mut serde_json::Deserializer::from_str(&text);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        // serde_json counts columns from 1 but says 0 before the first character of a line.
        let mark = Mark::new(inner.line().max(1), inner.column().max(1));
        let message = if at == "." || at.is_empty() || !inner.is_data() {
            inner.to_string()
        } else {
            format!("`{at}`: {inner}")
        };
        // serde_json appends " at line L column C"; the mark already says where.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        InputError::from(Diagnostic::new(path, mark, message).hint(shape))
    })?;
    Ok(value)
}

const GT_SHAPE: &str = "a COCO ground truth is an object with `images` ([{\"id\": 1}]), `annotations` ([{\"id\", \"image_id\", \"category_id\", \"bbox\": [x, y, w, h]}]) and `categories` ([{\"id\", \"name\"}])";
const DETS_SHAPE: &str = "COCO detections are an array of {\"image_id\", \"category_id\", \"bbox\": [x, y, w, h], \"score\"}";

/// Reads and checks a COCO ground truth and detections.
pub fn read_detection(
    gt_path: &Path,
    dets_path: &Path,
) -> Result<(GroundTruth, Vec<DetBox>), InputError> {
    let gt: GtFile = read_json(gt_path, GT_SHAPE)?;
    let dets: Vec<DetectionEntry> = read_json(dets_path, DETS_SHAPE)?;
    let gt_error = |message: String, hint: &str| -> InputError {
        Diagnostic::new(gt_path, Mark::FILE, message)
            .hint(hint)
            .into()
    };
    let dets_error = |message: String, hint: &str| -> InputError {
        Diagnostic::new(dets_path, Mark::FILE, message)
            .hint(hint)
            .into()
    };

    let mut images = HashSet::new();
    for (i, im) in gt.images.iter().enumerate() {
        if !images.insert(im.id) {
            return Err(gt_error(
                format!("`images[{i}].id`: image {} is listed twice", im.id),
                "list each image once",
            ));
        }
    }
    let mut categories: HashMap<i64, String> = HashMap::new();
    for (i, c) in gt.categories.iter().enumerate() {
        let name = c.name.clone().unwrap_or_else(|| c.id.to_string());
        if categories.insert(c.id, name).is_some() {
            return Err(gt_error(
                format!("`categories[{i}].id`: category {} is listed twice", c.id),
                "list each category once",
            ));
        }
    }
    if gt.annotations.is_empty() {
        return Err(gt_error(
            "the ground truth has no annotations: there is nothing to evaluate".into(),
            GT_SHAPE,
        ));
    }
    let check_box = |bbox: &[f64; 4]| {
        if bbox[2] < 0.0 || bbox[3] < 0.0 {
            Some("has a negative width or height")
        } else {
            None
        }
    };
    let mut boxes = Vec::with_capacity(gt.annotations.len());
    for (i, a) in gt.annotations.iter().enumerate() {
        if !images.contains(&a.image_id) {
            return Err(gt_error(
                format!(
                    "`annotations[{i}].image_id`: image {} is not in `images`",
                    a.image_id
                ),
                "list every annotated image in `images`",
            ));
        }
        if !categories.contains_key(&a.category_id) {
            return Err(gt_error(
                format!(
                    "`annotations[{i}].category_id`: category {} is not in `categories`",
                    a.category_id
                ),
                "list every category in `categories`",
            ));
        }
        if let Some(why) = check_box(&a.bbox) {
            return Err(gt_error(
                format!("`annotations[{i}].bbox` {why}"),
                "boxes are [x, y, width, height] with width and height >= 0",
            ));
        }
        if a.iscrowd > 1 {
            return Err(gt_error(
                format!("`annotations[{i}].iscrowd` is {}, not 0 or 1", a.iscrowd),
                "use 1 for crowd regions, 0 otherwise",
            ));
        }
        let area = a.area.unwrap_or(a.bbox[2] * a.bbox[3]);
        if area < 0.0 {
            return Err(gt_error(
                format!("`annotations[{i}].area` is negative"),
                "give the object's area in pixels, or leave `area` out to use the box's",
            ));
        }
        boxes.push(GtBox {
            id: a.id,
            image_id: a.image_id,
            category_id: a.category_id,
            bbox: a.bbox,
            area,
            iscrowd: a.iscrowd == 1,
        });
    }
    let gt_name = gt_path.display();
    let mut out = Vec::with_capacity(dets.len());
    for (i, d) in dets.iter().enumerate() {
        if !images.contains(&d.image_id) {
            return Err(dets_error(
                format!(
                    "`[{i}].image_id`: image {} is not among the images of {gt_name}",
                    d.image_id
                ),
                "detections must be on the ground truth's images; check that the two files belong together",
            ));
        }
        if !categories.contains_key(&d.category_id) {
            return Err(dets_error(
                format!(
                    "`[{i}].category_id`: category {} is not among the categories of {gt_name}",
                    d.category_id
                ),
                "use the ground truth's category ids; check that the two files belong together",
            ));
        }
        if let Some(why) = check_box(&d.bbox) {
            return Err(dets_error(
                format!("`[{i}].bbox` {why}"),
                "boxes are [x, y, width, height] with width and height >= 0",
            ));
        }
        out.push(DetBox {
            image_id: d.image_id,
            category_id: d.category_id,
            bbox: d.bbox,
            score: d.score,
        });
    }
    let categories = gt
        .categories
        .iter()
        .map(|c| Category {
            id: c.id,
            name: c.name.clone().unwrap_or_else(|| c.id.to_string()),
        })
        .collect();
    Ok((
        GroundTruth {
            images: gt.images.iter().map(|i| i.id).collect(),
            categories,
            boxes,
        },
        out,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GT: &str = r#"{"images": [{"id": 1}, {"id": 2}],
 "categories": [{"id": 1, "name": "fracture"}],
 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100}]}"#;

    fn read(gt: &str, dets: &str) -> Result<(GroundTruth, Vec<DetBox>), InputError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gt.json"), gt).unwrap();
        std::fs::write(dir.path().join("dets.json"), dets).unwrap();
        read_detection(&dir.path().join("gt.json"), &dir.path().join("dets.json"))
    }

    #[test]
    fn reads_a_pair() {
        let (gt, dets) = read(
            GT,
            r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], "score": 0.8}]"#,
        )
        .unwrap();
        assert_eq!(gt.boxes.len(), 1);
        assert_eq!(dets[0].score, 0.8);
    }

    #[test]
    fn problems_name_the_place() {
        let e = read(
            GT,
            r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 9], "score": 0.8}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("dets.json:1:") && e.contains("`[0].bbox`"),
            "{e}"
        );
        let e = read(
            GT,
            r#"[{"image_id": 7, "category_id": 1, "bbox": [1, 1, 9, 9], "score": 0.8}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`[0].image_id`: image 7 is not among the images"),
            "{e}"
        );
        let e = read(GT, r#"{"annotations": []}"#).unwrap_err().to_string();
        assert!(e.contains("invalid type: map, expected a sequence"), "{e}");
        let e = read("", "[]").unwrap_err().to_string();
        assert!(e.contains("gt.json: the file is empty"), "{e}");
    }
}
