//! The only libtorch path that opens a dataset's sealed test split: `engine test` hands it a
//! trained model's stage job, and it records the opening (a `TestKey`), predicts every test
//! image with the model, and writes what `engine metrics` reads: a classifier's
//! predictions CSV, or a detector's COCO ground truth and detections.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use engine_core::job::StageJob;
use engine_core::manifest::StageParams;
use engine_core::stages::detect::DetectorParams;
use engine_data::TestKey;

use crate::detect::{
    Images, Trained, coco_detections, detect, ground_truth, samples, usable, write_coco,
};
use crate::images::DeviceImages;
use crate::predict::load_model;
use crate::train::{attach_from, augmentation, image_cache, predict, write_predictions};

/// Predicts the test split of the dataset `job` (a finished `classifier.train` or
/// `detector.train` stage, its outputs in `job.out_dir`) trained on, and returns how many
/// images the predictions cover. A classifier's predictions go to the CSV file `out`; a
/// detector's `ground_truth.json` and `detections.json` to the directory `out`. `purpose`
/// is recorded with the opening.
pub fn test_predictions(
    job: &StageJob,
    out: &Path,
    purpose: &str,
    device: &str,
) -> Result<usize, String> {
    let p = match job.stage_params()? {
        StageParams::ClassifierTrain(p) => p,
        StageParams::DetectorTrain(p) => return test_detections(job, &p, out, purpose, device),
        _ => {
            return Err(format!(
                "stage `{}` is a `{}` stage; only `classifier.train` and `detector.train` models are tested",
                job.stage,
                job.kind.as_str()
            ));
        }
    };
    let device = crate::parse_device(device).map_err(|e| e.to_string())?;
    let (spec, root, mut catalog) = crate::train::read_dataset(job, &p.dataset)?;
    attach_from(job, &p, &mut catalog)?;
    let partition = crate::train::split(spec, catalog)?;
    let key = TestKey::record(&job.workspace, &p.dataset, purpose)
        .map_err(|e| format!("cannot record the opening of the test split: {e}"))?;
    let items = partition.test(&key).to_vec();
    if items.is_empty() {
        return Err(format!(
            "the test split of dataset `{}` is empty; give the dataset a `split` with `test` above 0",
            p.dataset
        ));
    }
    crate::train::exclusive(p.threads.unwrap_or(job.cpus), || {
        let model = load_model(&job.out_dir, &job.stage, device)?;
        let c = &model.config;
        let fingerprint = job.fingerprint(&p.dataset);
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let paths: Vec<PathBuf> = items.iter().map(|i| root.join(&i.path)).collect();
        let cache = image_cache(
            job,
            fingerprint,
            &ids,
            &paths,
            c.image_size as usize,
            c.channels,
            "test",
        )?;
        let images = DeviceImages::load(&cache, device, 2 << 30).map_err(|e| e.to_string())?;
        let k = c.classes.len();
        let probs = predict(
            &model.net,
            model.head,
            &images,
            &augmentation(0.0, c.channels),
            p.batch_size as usize,
            k,
        )?;
        // The calibrated probabilities are the model's; the raw ones, beside them, show
        // what the calibration changed.
        write_predictions(
            &out.with_extension("uncalibrated.csv"),
            partition.catalog(),
            &items,
            &probs,
        )?;
        let calibrated = model.calibrated(&probs)?;
        write_predictions(out, partition.catalog(), &items, &calibrated)
    })?;
    Ok(items.len())
}

/// A detector's half of [`test_predictions`]: the test images with boxes or a negative
/// label (as on validation; positives without boxes cannot be scored and are counted, not
/// used), letterboxed as the detector was trained, detected, and written in COCO terms.
fn test_detections(
    job: &StageJob,
    p: &DetectorParams,
    out: &Path,
    purpose: &str,
    device: &str,
) -> Result<usize, String> {
    let device = crate::parse_device(device).map_err(|e| e.to_string())?;
    let (spec, root, catalog) = crate::train::read_dataset(job, &p.dataset)?;
    let partition = crate::train::split(spec, catalog)?;
    let key = TestKey::record(&job.workspace, &p.dataset, purpose)
        .map_err(|e| format!("cannot record the opening of the test split: {e}"))?;
    let all = partition.test(&key);
    let items: Vec<_> = all.iter().filter(|i| usable(i, true)).cloned().collect();
    if items.is_empty() {
        return Err(format!(
            "the test split of dataset `{}` has no image with boxes or a negative label; give the dataset a `split` with `test` above 0",
            p.dataset
        ));
    }
    let left_out = all.len() - items.len();
    if left_out > 0 {
        println!(
            "{left_out} test image(s) are positive without boxes and cannot be scored by box; they are left out"
        );
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    crate::train::exclusive(p.threads.unwrap_or(job.cpus), || {
        let trained = Trained::load(&job.out_dir, &job.stage, device)?;
        let c = &trained.config;
        let num = |k: &str| {
            c[k].as_u64()
                .ok_or_else(|| format!("the config.json of stage `{}` has no `{k}`", job.stage))
        };
        let channels = num("channels")? as usize;
        let fingerprint = job.fingerprint(&p.dataset);
        let what = Images {
            fingerprint,
            root,
            catalog: partition.catalog(),
            size: num("image_size")? as usize,
            channels,
        };
        let (test, info) = samples(job, &what, &items, "test", &HashMap::new())?;
        let images = DeviceImages::load(&info, device, 2 << 30).map_err(|e| e.to_string())?;
        let dets = detect(
            &trained.net,
            &images,
            channels,
            p.batch_size as usize,
            p.nms_iou,
            p.max_detections as usize,
        )?;
        let gt = ground_truth(partition.catalog(), &test);
        write_coco(
            out,
            partition.catalog(),
            &test,
            &gt,
            &coco_detections(&test, &dets),
        )
    })?;
    Ok(items.len())
}
