//! The `pseudo_label` stage: a teacher detector labels the training images that are positive
//! at image level but have no boxes; confident boxes (at most `max_boxes` per image) become
//! that image's boxes for a student `detector.train` stage, and an image without a confident
//! box is dropped or keeps its best box at a lower weight. Only the training split is read.

use engine_core::job::StageJob;
use engine_core::manifest::StageParams;
use engine_core::stages::pseudo::Unconfident;
use engine_data::imagecache::Letterbox;
use serde_json::json;

use crate::detect::{Detection, Trained, detect, letterboxed};
use crate::images::DeviceImages;
use crate::train::{progress, write_json};

/// Runs a `pseudo_label` job; the error says what went wrong in a sentence.
pub fn run_stage(job: &StageJob) -> Result<(), String> {
    let StageParams::PseudoLabel(p) = job.stage_params()? else {
        return Err("not a pseudo_label job".into());
    };
    let device = crate::parse_device(&p.device).map_err(|e| e.to_string())?;
    let teacher_dir = job
        .upstream
        .get(&p.teacher)
        .ok_or_else(|| format!("no outputs of stage `{}`", p.teacher))?;
    crate::train::exclusive(job.cpus, || {
        let teacher = Trained::load(teacher_dir, &p.teacher, device)?;
        label(job, &p, &teacher, device)
    })
}

fn label(
    job: &StageJob,
    p: &engine_core::stages::pseudo::PseudoLabelParams,
    teacher: &Trained,
    device: tch::Device,
) -> Result<(), String> {
    let fingerprint = job.fingerprint(&p.dataset);
    let (spec, root, catalog) = crate::train::read_dataset(job, &p.dataset)?;
    let partition = crate::train::split(spec, catalog)?;
    let catalog = partition.catalog();
    let items: Vec<_> = partition
        .train()
        .iter()
        .filter(|i| i.boxes.is_none() && i.class != 0)
        .cloned()
        .collect();
    let size = teacher.config["image_size"].as_u64().unwrap_or(128) as usize;
    let channels = teacher.config["channels"].as_u64().unwrap_or(1) as usize;
    let nms_iou = teacher.config["params"]["nms_iou"].as_f64().unwrap_or(0.5);
    let mut images_out = Vec::new();
    let (mut labelled, mut down, mut dropped, mut boxes, mut score_sum) = (0, 0, 0, 0, 0.0);
    if !items.is_empty() {
        progress(
            0.0,
            &format!("labelling {} unboxed positive training images", items.len()),
        );
        let (info, sizes, failed) = letterboxed(
            job,
            fingerprint,
            root,
            &items,
            size,
            channels,
            "unboxed positive training",
        )?;
        let images = DeviceImages::load(&info, device, 2 << 30).map_err(|e| e.to_string())?;
        let dets = detect(
            &teacher.net,
            &images,
            channels,
            p.batch_size as usize,
            nms_iou,
            100,
        )?;
        for (i, (item, ds)) in items.iter().zip(&dets).enumerate() {
            if failed.iter().any(|f| f.index == i) {
                dropped += 1;
                continue;
            }
            let (w, h) = sizes[i];
            let lb = Letterbox::of(w, h, size);
            let confident: Vec<&Detection> = ds
                .iter()
                .filter(|d| f64::from(d.score) >= p.confidence)
                .take(p.max_boxes as usize)
                .collect();
            let (chosen, weight) = if !confident.is_empty() {
                labelled += 1;
                (confident, 1.0)
            } else if p.unconfident == Unconfident::DownWeight && !ds.is_empty() {
                down += 1;
                (vec![&ds[0]], p.unconfident_weight)
            } else {
                dropped += 1;
                continue;
            };
            let out: Vec<serde_json::Value> = chosen
                .iter()
                .filter_map(|d| {
                    let (x0, y0) = lb.to_source(f64::from(d.bbox[0]), f64::from(d.bbox[1]));
                    let (x1, y1) = lb.to_source(f64::from(d.bbox[2]), f64::from(d.bbox[3]));
                    let (fw, fh) = (f64::from(w.max(1)), f64::from(h.max(1)));
                    let (x0, x1) = (x0.clamp(0.0, fw) / fw, x1.clamp(0.0, fw) / fw);
                    let (y0, y1) = (y0.clamp(0.0, fh) / fh, y1.clamp(0.0, fh) / fh);
                    (x1 > x0 && y1 > y0).then(|| {
                        score_sum += f64::from(d.score);
                        json!({
                            "class": d.class,
                            "cx": (x0 + x1) / 2.0, "cy": (y0 + y1) / 2.0,
                            "w": x1 - x0, "h": y1 - y0,
                            "score": d.score,
                        })
                    })
                })
                .collect();
            boxes += out.len();
            images_out.push(json!({
                "id": catalog.shown_id(&item.id),
                "boxes": out,
                "weight": weight,
            }));
        }
    }
    write_json(
        &job.out_dir.join("pseudo_labels.json"),
        &json!({
            "teacher": p.teacher,
            "confidence": p.confidence,
            "images": images_out,
        }),
    )?;
    let metrics = json!({
        "unboxed_positives": items.len(),
        "labelled": labelled,
        "down_weighted": down,
        "dropped": dropped,
        "boxes": boxes,
        "mean_score": if boxes > 0 { score_sum / boxes as f64 } else { 0.0 },
    });
    write_json(&job.out_dir.join("metrics.json"), &metrics)?;
    println!(
        "{labelled} of {} unboxed positive training images labelled by `{}` ({boxes} boxes at confidence {} or more); {down} down-weighted, {dropped} dropped",
        items.len(),
        p.teacher,
        p.confidence
    );
    Ok(())
}
