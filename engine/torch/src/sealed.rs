//! The only libtorch path that opens a dataset's sealed test split: `engine test` hands it a
//! trained model's stage job, and it records the opening (a `TestKey`), predicts every test
//! image with the model, and writes the predictions in the form `engine metrics` reads.

use std::path::{Path, PathBuf};

use engine_core::job::StageJob;
use engine_core::manifest::StageParams;
use engine_data::TestKey;
use engine_data::salt::Salt;

use crate::images::DeviceImages;
use crate::predict::load_model;
use crate::train::{attach_from, augmentation, image_cache, predict, write_predictions};

/// Predicts the test split of the dataset `job` (a finished `classifier.train` stage, its
/// outputs in `job.out_dir`) trained on, writes the predictions to `out`, and returns how
/// many images they cover. `purpose` is recorded with the opening.
pub fn test_predictions(
    job: &StageJob,
    out: &Path,
    purpose: &str,
    device: &str,
) -> Result<usize, String> {
    let StageParams::ClassifierTrain(p) = job.stage_params()? else {
        return Err(format!(
            "stage `{}` is a `{}` stage; only `classifier.train` models are tested",
            job.stage,
            job.kind.as_str()
        ));
    };
    let device = crate::parse_device(device).map_err(|e| e.to_string())?;
    let _one_at_a_time = crate::train::TRAINING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tch::set_num_threads(p.threads.unwrap_or(job.cpus).max(1) as i32);
    let (spec, root) = job.dataset(&p.dataset)?;
    let salt = Salt::for_workspace(&job.workspace)
        .map_err(|e| format!("cannot read the workspace's salt: {e}"))?;
    let mut catalog = engine_data::read(spec, root, &salt).map_err(|e| e.render())?;
    attach_from(job, &p, &mut catalog)?;
    let partition = catalog
        .partition(&spec.split.clone().unwrap_or_default())
        .map_err(|e| e.render())?;
    let key = TestKey::record(&job.workspace, &p.dataset, purpose)
        .map_err(|e| format!("cannot record the opening of the test split: {e}"))?;
    let items = partition.test(&key).to_vec();
    if items.is_empty() {
        return Err(format!(
            "the test split of dataset `{}` is empty; give the dataset a `split` with `test` above 0",
            p.dataset
        ));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let model = load_model(&job.out_dir, &job.stage, device)?;
        let c = &model.config;
        let fingerprint = job
            .dataset_fingerprints
            .get(&p.dataset)
            .cloned()
            .unwrap_or_default();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let paths: Vec<PathBuf> = items.iter().map(|i| root.join(&i.path)).collect();
        let cache = image_cache(
            job,
            &fingerprint,
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
        write_predictions(out, partition.catalog(), &items, &probs)
    }));
    result.unwrap_or_else(|payload| {
        Err(format!(
            "libtorch failed: {}",
            crate::error::panic_message(payload.as_ref())
        ))
    })?;
    Ok(items.len())
}
