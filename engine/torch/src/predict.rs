//! The `model.predict` stage: a binary model trained by `classifier.train` applied to every
//! image of a dataset, each image labelled with the model's probability and a thresholded
//! label, written as `attributes.csv` for other stages to read as an attribute. The threshold
//! comes from the model's own validation predictions; no label of the dataset is read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use engine_core::job::StageJob;
use engine_core::manifest::StageParams;
use engine_core::metrics::{BinaryData, BinaryOptions, Calibration};
use engine_core::stages::predict::{PredictParams, Threshold};
use engine_core::stages::train::Backbone;
use serde::Deserialize;
use serde_json::json;
use tch::nn;

use crate::images::DeviceImages;
use crate::nets::{self, Net};
use crate::train::{Head, augmentation, image_cache, predict, progress, write_json};

/// What `classifier.train` wrote in `config.json` that applying the model needs.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelConfig {
    pub backbone: Backbone,
    pub image_size: u32,
    pub channels: usize,
    pub classes: Vec<String>,
    #[serde(default = "softmax")]
    pub head: String,
    pub target: String,
}

/// A trained model, ready to apply.
pub(crate) struct Model {
    pub config: ModelConfig,
    /// The calibration map fitted on its validation predictions; apply it to every output.
    pub calibration: Calibration,
    pub head: Head,
    pub net: Net,
    // Holds the network's weights.
    _vs: nn::VarStore,
}

/// Loads the model a `classifier.train` stage left in `dir` (named `stage` in messages).
pub(crate) fn load_model(dir: &Path, stage: &str, device: tch::Device) -> Result<Model, String> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("stage `{stage}` left no readable config.json: {e}"))?;
    let config: ModelConfig = serde_json::from_str(&text).map_err(|e| {
        format!("the config.json of stage `{stage}` is not a classifier.train config: {e}")
    })?;
    let head = Head::from_name(&config.head).ok_or_else(|| {
        format!(
            "unknown head `{}` in {}",
            config.head,
            config_path.display()
        )
    })?;
    let mut vs = nn::VarStore::new(device);
    let net = Net::new(
        &vs.root(),
        config.backbone,
        config.channels as i64,
        head.outputs(config.classes.len()),
    );
    let weights = dir.join("model.safetensors");
    let l = nets::load_pretrained(&vs, &net, &weights)?;
    if l.fresh_head || l.summed_channels {
        return Err(format!(
            "{} does not fit the network its config.json describes",
            weights.display()
        ));
    }
    vs.freeze();
    let calibration_path = dir.join("calibration.json");
    let calibration: Calibration = std::fs::read_to_string(&calibration_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            format!(
                "stage `{stage}` left no readable calibration.json (hint: run `engine apply` again to retrain it)"
            )
        })?;
    Ok(Model {
        calibration,
        config,
        head,
        net,
        _vs: vs,
    })
}

impl Model {
    /// The model's calibrated probabilities `[class][image]` from its raw ones.
    pub(crate) fn calibrated(&self, probs: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, String> {
        if self.calibration.bias.len() != probs.len() {
            return Err(format!(
                "the calibration.json of this model has {} biases for {} classes; the model's files do not belong together (hint: run `engine apply` again to retrain it)",
                self.calibration.bias.len(),
                probs.len()
            ));
        }
        Ok(self.calibration.apply(probs))
    }
}

fn softmax() -> String {
    "softmax".into()
}

/// Runs a `model.predict` job; the error says what went wrong in a sentence.
pub fn run_stage(job: &StageJob) -> Result<(), String> {
    let StageParams::ModelPredict(p) = job.stage_params()? else {
        return Err("not a model.predict job".into());
    };
    let device = crate::parse_device(&p.device).map_err(|e| e.to_string())?;
    crate::train::exclusive(job.cpus, || run(job, &p, device))
}

fn run(job: &StageJob, p: &PredictParams, device: tch::Device) -> Result<(), String> {
    let model_dir = job
        .upstream
        .get(&p.model)
        .ok_or_else(|| format!("no outputs of stage `{}`", p.model))?;
    let model = load_model(model_dir, &p.model, device)?;
    let config = &model.config;
    if config.classes.len() != 2 {
        return Err(format!(
            "`model.predict` labels an attribute with a binary model, and `{}` tells {} classes of `{}` apart",
            p.model,
            config.classes.len(),
            config.target
        ));
    }
    let (threshold, rule, val) = threshold(p, model_dir)?;

    let (_, root, catalog) = crate::train::read_dataset(job, &p.dataset)?;
    let images = catalog.images();
    let fingerprint = job.fingerprint(&p.dataset);
    let ids: Vec<&str> = images.iter().map(|(id, _)| id.as_str()).collect();
    let paths: Vec<PathBuf> = images.iter().map(|(_, path)| root.join(path)).collect();
    let cache = image_cache(
        job,
        fingerprint,
        &ids,
        &paths,
        config.image_size as usize,
        config.channels,
        "dataset",
    )?;
    let loaded = DeviceImages::load(&cache, device, 2 << 30).map_err(|e| e.to_string())?;

    progress(0.0, &format!("labelling {} images", images.len()));
    let plain = augmentation(0.0, config.channels);
    let probs = model.calibrated(&predict(
        &model.net,
        model.head,
        &loaded,
        &plain,
        p.batch_size as usize,
        2,
    )?)?;
    let name = &p.as_attribute;
    let mut csv = format!("image_id,{name},{name}_prob\n");
    let mut positives = 0usize;
    for ((id, _), prob) in images.iter().zip(&probs[1]) {
        let label = u8::from(*prob >= threshold);
        positives += usize::from(label);
        writeln!(csv, "{},{label},{prob}", catalog.shown_id(id)).ok();
    }
    let out = &job.out_dir;
    std::fs::write(out.join("attributes.csv"), csv)
        .map_err(|e| format!("cannot write attributes.csv: {e}"))?;
    let summary = json!({
        "attribute": name,
        "model": p.model,
        "rule": rule,
        "threshold": threshold,
        "validation": val,
        "images": images.len(),
        "predicted_present": positives,
    });
    write_json(&out.join("threshold.json"), &summary)?;
    println!(
        "labelled {} images: {positives} with `{name}` at threshold {threshold:.4} ({rule})",
        images.len()
    );
    Ok(())
}

/// The threshold, the rule's name and its figures on the model's validation predictions.
fn threshold(
    p: &PredictParams,
    model_dir: &Path,
) -> Result<(f64, String, serde_json::Value), String> {
    // The same reader as `engine metrics`.
    let preds =
        engine_core::metrics::predictions::read_binary(&model_dir.join("predictions.csv"), None)
            .map_err(|e| {
                format!(
                    "the validation predictions of stage `{}` cannot be read: {e}",
                    p.model
                )
            })?;
    let (positive, scores) = (preds.positive, preds.probs);
    let data = BinaryData::new(&positive, &scores).map_err(|e| {
        format!(
            "cannot choose a threshold on the validation predictions of `{}`: {e}",
            p.model
        )
    })?;
    let m = data.metrics(&BinaryOptions::default());
    let (t, rule) = match p.threshold {
        Threshold::Fixed(t) => (t, "fixed".to_owned()),
        Threshold::Rule(_) => {
            if !m.threshold.is_finite() {
                return Err(format!(
                    "the validation predictions of `{}` hold one class only; set a fixed `threshold`",
                    p.model
                ));
            }
            (m.threshold, "youden".to_owned())
        }
    };
    let (mut tp, mut fp) = (0usize, 0usize);
    for (pos, s) in positive.iter().zip(&scores) {
        if *s >= t {
            if *pos {
                tp += 1;
            } else {
                fp += 1;
            }
        }
    }
    let npos = positive.iter().filter(|p| **p).count();
    let nneg = positive.len() - npos;
    let val = json!({
        "images": positive.len(),
        "auc": m.auc,
        "sensitivity": tp as f64 / npos.max(1) as f64,
        "specificity": 1.0 - fp as f64 / nneg.max(1) as f64,
    });
    Ok((t, rule, val))
}
