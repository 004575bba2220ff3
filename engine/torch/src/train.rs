//! The `classifier.train` stage: a classifier trained on a dataset's training split from the
//! decoded-image cache on the device, model selection on the validation split, and the
//! best-validation checkpoint, predictions, curve and metrics written out. The test split is
//! never opened.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use engine_core::job::StageJob;
use engine_core::manifest::StageParams;
use engine_core::metrics::{BinaryData, MulticlassData};
use engine_core::stages::train::{Backbone, TrainParams};
use engine_data::imagecache;
use engine_data::salt::Salt;
use engine_data::{Catalog, Item};
use serde_json::json;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::images::{Augment, DeviceImages, epoch_order};

/// Serialises training in one process: libtorch's random generator (weight initialisation,
/// dropout) and its thread count are process-wide, so two runs at once would interleave.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a `classifier.train` job; the error says what went wrong in a sentence.
pub fn run_stage(job: &StageJob) -> Result<(), String> {
    let StageParams::ClassifierTrain(p) = job.stage_params()? else {
        return Err("not a classifier.train job".into());
    };
    let device = crate::parse_device(&p.device).map_err(|e| e.to_string())?;
    let _one_at_a_time = TRAINING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tch::set_num_threads(job.cpus.max(1) as i32);
    let data = prepare(job, &p)?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(job, &p, &data, device)
    }));
    result.unwrap_or_else(|payload| {
        Err(format!(
            "libtorch failed: {}",
            crate::error::panic_message(payload.as_ref())
        ))
    })
}

/// The training and validation images, cached and labelled.
struct Prepared {
    catalog: Catalog,
    train: Vec<Item>,
    val: Vec<Item>,
    train_cache: imagecache::CacheInfo,
    val_cache: imagecache::CacheInfo,
    channels: usize,
}

fn progress(fraction: f64, message: &str) {
    println!(
        "{} {}",
        engine_core::events::PROGRESS_PREFIX,
        json!({"fraction": fraction, "message": message})
    );
}

fn prepare(job: &StageJob, p: &TrainParams) -> Result<Prepared, String> {
    let (spec, root) = job.dataset(&p.dataset)?;
    let fingerprint = job
        .dataset_fingerprints
        .get(&p.dataset)
        .cloned()
        .unwrap_or_default();
    let salt = Salt::for_workspace(&job.workspace)
        .map_err(|e| format!("cannot read the workspace's salt: {e}"))?;
    let catalog = engine_data::read(spec, root, &salt).map_err(|e| e.render())?;
    let partition = catalog
        .partition(&spec.split.clone().unwrap_or_default())
        .map_err(|e| e.render())?;
    let (mut train, mut val) = (partition.train().to_vec(), partition.val().to_vec());
    if train.is_empty() || val.is_empty() {
        return Err(format!(
            "dataset `{}` has {} training and {} validation images; both are needed",
            p.dataset,
            train.len(),
            val.len()
        ));
    }
    let catalog = partition.catalog().clone();
    let channels = match p.channels {
        Some(c) => usize::from(c),
        None => {
            let first = engine_data::image::decode(&root.join(&train[0].path))
                .map_err(|e| format!("{}: {e}", catalog.shown_item(&train[0])))?;
            usize::from(first.channels)
        }
    };
    let size = p.image_size as usize;
    let dir = job.workspace.join(".engine").join("images");
    let mut caches = Vec::new();
    for (name, items) in [("training", &mut train), ("validation", &mut val)] {
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let key = imagecache::key(&fingerprint, &ids, size, channels);
        let info = match imagecache::open(&dir, &key) {
            Some(info) => info,
            None => {
                progress(0.0, &format!("decoding {} {name} images", items.len()));
                let paths: Vec<PathBuf> = items.iter().map(|i| root.join(&i.path)).collect();
                let (info, failed) = imagecache::build(
                    &dir,
                    &key,
                    &paths,
                    size,
                    channels,
                    job.cpus.max(1) as usize,
                    &|_| {},
                )
                .map_err(|e| format!("cannot write the image cache: {e}"))?;
                if !failed.is_empty() {
                    // The cache keeps a blank in their place; they are left out of training.
                    eprintln!(
                        "{} {name} images cannot be decoded and are left out",
                        failed.len()
                    );
                }
                info
            }
        };
        caches.push(info);
    }
    let val_cache = caches.pop().ok_or("no validation cache")?;
    let train_cache = caches.pop().ok_or("no training cache")?;
    Ok(Prepared {
        catalog,
        train,
        val,
        train_cache,
        val_cache,
        channels,
    })
}

/// The network for `backbone` with `classes` outputs.
fn network(vs: &nn::Path<'_>, backbone: Backbone, channels: i64, classes: i64) -> nn::SequentialT {
    match backbone {
        Backbone::SmallCnn => {
            let mut seq = nn::seq_t();
            let mut c_in = channels;
            for (i, c_out) in [32i64, 64, 128, 256].into_iter().enumerate() {
                let conv = nn::ConvConfig {
                    padding: 1,
                    bias: false,
                    ..Default::default()
                };
                seq = seq
                    .add(nn::conv2d(vs / format!("conv{i}"), c_in, c_out, 3, conv))
                    .add(nn::batch_norm2d(
                        vs / format!("bn{i}"),
                        c_out,
                        Default::default(),
                    ))
                    .add_fn(|x| x.relu())
                    .add_fn(|x| x.max_pool2d_default(2));
                c_in = c_out;
            }
            seq.add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
                .add_fn_t(|x, train| x.dropout(0.2, train))
                .add(nn::linear(vs / "head", c_in, classes, Default::default()))
        }
    }
}

/// The augmentation of strength `s` (0 none, 1 strongest) for `channels`-channel images.
fn augmentation(s: f64, channels: usize) -> Augment {
    let (mean, std) = if channels == 3 {
        (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
    } else {
        (vec![0.5], vec![0.25])
    };
    Augment {
        hflip: if s > 0.0 { 0.5 } else { 0.0 },
        rotate_deg: 15.0 * s,
        translate: 0.1 * s,
        scale: (1.0 - 0.15 * s, 1.0 + 0.15 * s),
        brightness: 0.3 * s,
        contrast: 0.3 * s,
        mean,
        std,
    }
}

fn train(job: &StageJob, p: &TrainParams, data: &Prepared, device: Device) -> Result<(), String> {
    let started = Instant::now();
    let seed = job.seed;
    tch::manual_seed(seed as i64);
    let k = data.catalog.classes.len();
    let images =
        DeviceImages::load(&data.train_cache, device, 4 << 30).map_err(|e| e.to_string())?;
    let val_images =
        DeviceImages::load(&data.val_cache, device, 1 << 30).map_err(|e| e.to_string())?;
    let labels: Vec<i64> = data.train.iter().map(|i| i.class as i64).collect();
    let val_labels: Vec<u32> = data.val.iter().map(|i| i.class as u32).collect();
    let labels_t = Tensor::from_slice(&labels).to_device(device);

    let vs = nn::VarStore::new(device);
    let net = network(&vs.root(), p.backbone, data.channels as i64, k as i64);
    let mut opt = nn::AdamW {
        wd: p.weight_decay,
        ..Default::default()
    }
    .build(&vs, p.lr)
    .map_err(|e| e.to_string())?;
    // Class weights: inverse training frequency, normalised to mean 1.
    let mut counts = vec![0f64; k];
    for l in &labels {
        counts[*l as usize] += 1.0;
    }
    let weights: Vec<f32> = if p.loss.class_weighted {
        let present = counts.iter().filter(|c| **c > 0.0).count() as f64;
        let inv: Vec<f64> = counts
            .iter()
            .map(|c| if *c > 0.0 { 1.0 / c } else { 0.0 })
            .collect();
        let mean = inv.iter().sum::<f64>() / present;
        inv.iter().map(|v| (v / mean) as f32).collect()
    } else {
        vec![1.0; k]
    };
    let weights_t = Tensor::from_slice(&weights).to_device(device);
    let aug = augmentation(p.augment, data.channels);
    let plain = augmentation(0.0, data.channels);
    let batch = p.batch_size as usize;
    let n = images.len();
    let steps_per_epoch = n.div_ceil(batch);
    let total_steps = (steps_per_epoch * p.epochs as usize).max(1);
    let warmup = (p.warmup_epochs * steps_per_epoch as f64).round() as usize;
    let eps = p.loss.label_smoothing;
    let out = &job.out_dir;
    let mut curve = String::new();
    let mut best: Option<(f64, u32, Vec<Vec<f64>>)> = None;
    let mut since_best = 0u32;
    let mut step = 0usize;
    let mut stopped = "epochs";
    for epoch in 0..p.epochs {
        let epoch_started = Instant::now();
        let order = epoch_order(n, seed, u64::from(epoch));
        let mut loss_sum = 0.0;
        for (b, chunk) in order.chunks(batch).enumerate() {
            let lr = opt_lr(step, warmup, total_steps, p.lr);
            opt.set_lr(lr);
            let x = images.batch(chunk).map_err(|e| e.to_string())?;
            let x = aug
                .apply(&x, seed ^ (u64::from(epoch) << 32), (b * batch) as u64)
                .map_err(|e| e.to_string())?;
            let idx = Tensor::from_slice(chunk).to_device(device);
            let y = labels_t.index_select(0, &idx);
            let logits = net.forward_t(&x, true);
            let logp = logits.log_softmax(-1, Kind::Float);
            let target = y.one_hot(k as i64).to_kind(Kind::Float) * (1.0 - eps) + eps / k as f64;
            let per = -(target * &logp).sum_dim_intlist(-1, false, Kind::Float);
            let w = weights_t.index_select(0, &y);
            let loss = (per * &w).sum(Kind::Float) / w.sum(Kind::Float);
            opt.backward_step(&loss);
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                return Err(format!(
                    "the loss became {l} in epoch {}; lower `lr`",
                    epoch + 1
                ));
            }
            loss_sum += l * chunk.len() as f64;
            step += 1;
        }
        let train_loss = loss_sum / n as f64;
        let probs = predict(&net, &val_images, &plain, batch, k)?;
        let metric = validation_metric(&val_labels, &probs, k);
        let improved = best.as_ref().is_none_or(|(m, _, _)| metric > *m);
        if improved {
            vs.save(out.join("model.safetensors"))
                .map_err(|e| format!("cannot save the checkpoint: {e}"))?;
            best = Some((metric, epoch + 1, probs));
            since_best = 0;
        } else {
            since_best += 1;
        }
        let line = json!({
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_metric": metric,
            "lr": opt_lr(step, warmup, total_steps, p.lr),
            "seconds": epoch_started.elapsed().as_secs_f64(),
        });
        writeln!(curve, "{line}").ok();
        let elapsed = started.elapsed().as_secs_f64();
        let per_epoch = elapsed / f64::from(epoch + 1);
        progress(
            f64::from(epoch + 1) / f64::from(p.epochs),
            &format!(
                "epoch {}/{} loss {train_loss:.4} val {} {metric:.4} ETA {:.0}s",
                epoch + 1,
                p.epochs,
                metric_name(k),
                per_epoch * f64::from(p.epochs - epoch - 1)
            ),
        );
        if let Some(patience) = p.early_stopping
            && since_best >= patience
        {
            stopped = "early_stopping";
            break;
        }
        if let Some(minutes) = p.budget_minutes
            && elapsed >= minutes * 60.0
            && epoch + 1 < p.epochs
        {
            stopped = "budget";
            break;
        }
    }
    let (metric, best_epoch, probs) = best.ok_or("no epoch ran")?;
    let epochs_run = curve.lines().count();
    std::fs::write(out.join("curve.jsonl"), curve).map_err(|e| e.to_string())?;
    write_predictions(&out.join("predictions.csv"), data, &probs)?;
    let metrics = json!({
        "metric": metric_name(k),
        "best": metric,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "stopped_by": stopped,
        "train_images": data.train.len(),
        "val_images": data.val.len(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    write_json(&out.join("metrics.json"), &metrics)?;
    let config = json!({
        "backbone": p.backbone,
        "image_size": p.image_size,
        "channels": data.channels,
        "classes": data.catalog.classes,
        "target": data.catalog.target,
        "dataset": p.dataset,
        "normalise": {"mean": plain.mean, "std": plain.std},
        "params": p,
        "seed": seed,
    });
    write_json(&out.join("config.json"), &config)?;
    println!(
        "best validation {} {metric:.4} at epoch {best_epoch} of {epochs_run} ({stopped})",
        metric_name(k)
    );
    Ok(())
}

fn opt_lr(step: usize, warmup: usize, total: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let t = (step - warmup) as f64 / (total - warmup).max(1) as f64;
        peak * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn metric_name(k: usize) -> &'static str {
    if k == 2 { "auc" } else { "macro_auc" }
}

/// Probabilities `[class][item]` for every validation image.
fn predict(
    net: &nn::SequentialT,
    images: &DeviceImages,
    plain: &Augment,
    batch: usize,
    k: usize,
) -> Result<Vec<Vec<f64>>, String> {
    let _guard = tch::no_grad_guard();
    let mut out = vec![Vec::with_capacity(images.len()); k];
    let all: Vec<i64> = (0..images.len() as i64).collect();
    for chunk in all.chunks(batch) {
        let x = images.batch(chunk).map_err(|e| e.to_string())?;
        let x = plain.apply(&x, 0, 0).map_err(|e| e.to_string())?;
        let p = net
            .forward_t(&x, false)
            .softmax(-1, Kind::Float)
            .to_device(Device::Cpu);
        let flat: Vec<f32> = Vec::<f32>::try_from(p.flatten(0, -1)).map_err(|e| e.to_string())?;
        for (i, v) in flat.iter().enumerate() {
            out[i % k].push(f64::from(*v));
        }
    }
    Ok(out)
}

/// AUC (binary) or macro AUC; 0.5 when undefined (a single class in validation).
fn validation_metric(labels: &[u32], probs: &[Vec<f64>], k: usize) -> f64 {
    let m = if k == 2 {
        let pos: Vec<bool> = labels.iter().map(|l| *l == 1).collect();
        BinaryData::new(&pos, &probs[1])
            .map(|d| d.auc())
            .unwrap_or(f64::NAN)
    } else {
        MulticlassData::new(labels, probs)
            .map(|d| d.metrics().macro_auc)
            .unwrap_or(f64::NAN)
    };
    if m.is_finite() { m } else { 0.5 }
}

/// `id,label,prob` (binary) or `id,label,<class>...` (multiclass), plus `patient` (hashed)
/// and each attribute, in the form `engine metrics` reads.
fn write_predictions(path: &Path, data: &Prepared, probs: &[Vec<f64>]) -> Result<(), String> {
    let cat = &data.catalog;
    let k = cat.classes.len();
    let mut text = String::from("id,label");
    if k == 2 {
        text.push_str(",prob");
    } else {
        for c in &cat.classes {
            write!(text, ",{c}").ok();
        }
    }
    text.push_str(",patient");
    for a in &cat.attributes {
        write!(text, ",{a}").ok();
    }
    text.push('\n');
    for (i, item) in data.val.iter().enumerate() {
        let label = if k == 2 {
            item.class.to_string()
        } else {
            cat.classes[item.class].clone()
        };
        write!(text, "{},{label}", cat.shown_id(&item.id)).ok();
        if k == 2 {
            write!(text, ",{}", probs[1][i]).ok();
        } else {
            for c in probs {
                write!(text, ",{}", c[i]).ok();
            }
        }
        let group = item
            .patient
            .as_deref()
            .or(item.lesion.as_deref())
            .unwrap_or(&item.id);
        write!(text, ",{}", cat.shown_group(group)).ok();
        for a in &cat.attributes {
            match item.attributes.get(a) {
                Some(v) => write!(text, ",{v}").ok(),
                None => write!(text, ",").ok(),
            };
        }
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
