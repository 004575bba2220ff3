//! The `classifier.train` stage: a classifier trained on a dataset's training split from the
//! decoded-image cache on the device, model selection on the validation split, and the
//! best-validation checkpoint, its calibration map (fitted on the validation predictions),
//! the calibrated predictions, curve and metrics written out. The test split is never opened.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use engine_core::job::StageJob;
use engine_core::manifest::{Dataset, StageParams};
use engine_core::metrics::calibration::{self, Calibration};
use engine_core::metrics::rng::Xoshiro256;
use engine_core::metrics::{BinaryData, BinaryOptions, MulticlassData};
use engine_core::stages::train::{Loss, LossKind, SamplerKind, TrainParams};
use engine_core::task::{Metric, Objective};
use engine_data::imagecache;
use engine_data::salt::Salt;
use engine_data::{Catalog, Item, Partition};
use serde_json::json;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::images::{Augment, DeviceImages, epoch_order};
use crate::nets::{self, Net};
use crate::sampling;

/// Serialises training in one process: libtorch's random generator (weight initialisation,
/// dropout) and its thread count are process-wide, so two runs at once would interleave.
pub(crate) static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` as this process's only libtorch stage: one at a time ([`TRAINING`]), with
/// `threads` intra-op threads, and a panic inside libtorch turned into an error.
pub(crate) fn exclusive<T>(
    threads: u32,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let _one_at_a_time = TRAINING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tch::set_num_threads(threads.max(1) as i32);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(format!(
            "libtorch failed: {}",
            crate::error::panic_message(payload.as_ref())
        ))
    })
}

/// The job's dataset `name`: its declaration, its root, and its catalog read with the
/// workspace's salt (patients appear only as salted hashes).
pub(crate) fn read_dataset<'j>(
    job: &'j StageJob,
    name: &str,
) -> Result<(&'j Dataset, &'j Path, Catalog), String> {
    let (spec, root) = job.dataset(name)?;
    let salt = Salt::for_workspace(&job.workspace)
        .map_err(|e| format!("cannot read the workspace's salt: {e}"))?;
    let catalog = engine_data::read(spec, root, &salt).map_err(|e| e.render())?;
    Ok((spec, root, catalog))
}

/// `catalog` split as the dataset `spec` declares it (the test split stays sealed).
pub(crate) fn split(spec: &Dataset, catalog: Catalog) -> Result<Partition, String> {
    catalog
        .partition(&spec.split.clone().unwrap_or_default())
        .map_err(|e| e.render())
}

/// Runs a `classifier.train` job; the error says what went wrong in a sentence.
pub fn run_stage(job: &StageJob) -> Result<(), String> {
    let StageParams::ClassifierTrain(p) = job.stage_params()? else {
        return Err("not a classifier.train job".into());
    };
    let device = crate::parse_device(&p.device).map_err(|e| e.to_string())?;
    exclusive(p.threads.unwrap_or(job.cpus), || {
        let data = prepare(job, &p)?;
        train(job, &p, &data, device)
    })
}

/// The training and validation images, cached and labelled.
struct Prepared {
    catalog: Catalog,
    train: Vec<Item>,
    val: Vec<Item>,
    train_cache: imagecache::CacheInfo,
    val_cache: imagecache::CacheInfo,
    /// The training images' masks, when the segmentation head is on.
    train_masks: Option<imagecache::CacheInfo>,
    channels: usize,
}

pub(crate) fn progress(fraction: f64, message: &str) {
    println!(
        "{} {}",
        engine_core::events::PROGRESS_PREFIX,
        json!({"fraction": fraction, "message": message})
    );
}

fn prepare(job: &StageJob, p: &TrainParams) -> Result<Prepared, String> {
    let fingerprint = job.fingerprint(&p.dataset);
    let (spec, root, mut catalog) = crate::train::read_dataset(job, &p.dataset)?;
    attach_from(job, p, &mut catalog)?;
    for (name, field) in p.attribute_uses() {
        if !catalog.attributes.iter().any(|a| a == name) {
            return Err(format!(
                "`{field}` names attribute `{name}`, which dataset `{}` does not have (its attributes: {})",
                p.dataset,
                if catalog.attributes.is_empty() {
                    "none".to_owned()
                } else {
                    catalog.attributes.join(", ")
                }
            ));
        }
    }
    let partition = crate::train::split(spec, catalog)?;
    let (train, val) = (partition.train().to_vec(), partition.val().to_vec());
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
    let mut caches = Vec::new();
    for (name, items) in [("training", &train), ("validation", &val)] {
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let paths: Vec<PathBuf> = items.iter().map(|i| root.join(&i.path)).collect();
        caches.push(image_cache(
            job,
            fingerprint,
            &ids,
            &paths,
            size,
            channels,
            name,
        )?);
    }
    let val_cache = caches.pop().ok_or("no validation cache")?;
    let train_cache = caches.pop().ok_or("no training cache")?;
    let train_masks = match &p.segmentation {
        Some(_) => {
            if !engine_data::masks::has_masks(spec.format) {
                return Err(format!(
                    "the auxiliary segmentation head needs masks, and dataset `{}` (format `{}`) has none",
                    p.dataset,
                    spec.format.as_str()
                ));
            }
            let masks = engine_data::masks::Masks::read(spec, root).map_err(|e| e.render())?;
            let images: Vec<(&str, PathBuf)> = train
                .iter()
                .map(|i| (i.id.as_str(), root.join(&i.path)))
                .collect();
            let ids: Vec<&str> = images.iter().map(|(id, _)| *id).collect();
            let key = imagecache::key(&format!("{fingerprint}:masks"), &ids, size, 1);
            let dir = job.workspace.join(".engine").join("images");
            let (info, failed) = masks
                .cache(&dir, &key, &images, size, job.cpus.max(1) as usize)
                .map_err(|e| format!("cannot write the mask cache: {e}"))?;
            if let Some(f) = failed.first() {
                return Err(format!(
                    "the mask of {} cannot be made: {}",
                    catalog.shown_item(&train[f.index]),
                    f.reason
                ));
            }
            Some(info)
        }
        None => None,
    };
    Ok(Prepared {
        catalog,
        train,
        val,
        train_cache,
        val_cache,
        train_masks,
        channels,
    })
}

/// Attaches the attributes that the stages in `from` wrote (`attributes.csv`).
pub(crate) fn attach_from(
    job: &StageJob,
    p: &TrainParams,
    catalog: &mut Catalog,
) -> Result<(), String> {
    for stage in &p.from {
        let file = job
            .upstream
            .get(stage)
            .ok_or_else(|| format!("no outputs of stage `{stage}`"))?
            .join("attributes.csv");
        if !file.is_file() {
            return Err(format!("stage `{stage}` wrote no attributes.csv"));
        }
        engine_data::read::attach_attribute_table(catalog, &file).map_err(|e| e.render())?;
    }
    Ok(())
}

/// The decoded images of `paths` at `size` pixels and `channels` channels, from the
/// workspace's image cache, decoded now when not there yet.
pub(crate) fn image_cache(
    job: &StageJob,
    fingerprint: &str,
    ids: &[&str],
    paths: &[PathBuf],
    size: usize,
    channels: usize,
    name: &str,
) -> Result<imagecache::CacheInfo, String> {
    let dir = job.workspace.join(".engine").join("images");
    let key = imagecache::key(fingerprint, ids, size, channels);
    if let Some(info) = imagecache::open(&dir, &key) {
        return Ok(info);
    }
    progress(0.0, &format!("decoding {} {name} images", paths.len()));
    let (info, failed) = imagecache::build(
        &dir,
        &key,
        paths,
        size,
        channels,
        job.cpus.max(1) as usize,
        &|_| {},
    )
    .map_err(|e| format!("cannot write the image cache: {e}"))?;
    if !failed.is_empty() {
        // The cache keeps a blank in their place.
        eprintln!(
            "{} {name} images cannot be decoded and are left blank",
            failed.len()
        );
    }
    Ok(info)
}

/// The augmentation of strength `s` (0 none, 1 strongest) for `channels`-channel images.
pub fn augmentation(s: f64, channels: usize) -> Augment {
    let (mean, std) = normalisation(channels);
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

/// The per-channel mean and standard deviation images of `channels` channels are
/// normalised with (ImageNet's for colour).
pub(crate) fn normalisation(channels: usize) -> (Vec<f64>, Vec<f64>) {
    if channels == 3 {
        (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
    } else {
        (vec![0.5], vec![0.25])
    }
}

/// How the network's outputs turn into class probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// One logit per class and a softmax.
    Softmax,
    /// One logit, the positive class's, and a sigmoid (binary tasks).
    Sigmoid,
}

impl Head {
    /// The head `loss` needs for `k` classes.
    fn for_loss(kind: LossKind, k: usize) -> Head {
        if k == 2 && matches!(kind, LossKind::Bce | LossKind::Focal) {
            Head::Sigmoid
        } else {
            Head::Softmax
        }
    }

    /// Logits the network outputs for `k` classes.
    pub fn outputs(self, k: usize) -> i64 {
        match self {
            Head::Softmax => k as i64,
            Head::Sigmoid => 1,
        }
    }

    /// The name written to `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Head::Softmax => "softmax",
            Head::Sigmoid => "sigmoid",
        }
    }

    /// Parses [`Head::as_str`].
    pub fn from_name(s: &str) -> Option<Head> {
        match s {
            "softmax" => Some(Head::Softmax),
            "sigmoid" => Some(Head::Sigmoid),
            _ => None,
        }
    }

    /// Class probabilities `N x k` from logits.
    pub fn probabilities(self, logits: &Tensor) -> Tensor {
        match self {
            Head::Softmax => logits.softmax(-1, Kind::Float),
            Head::Sigmoid => {
                let p = logits.sigmoid().to_kind(Kind::Float);
                Tensor::cat(&[p.ones_like() - &p, p], 1)
            }
        }
    }
}

/// The per-image loss for `logits` against soft targets `t` (`N x k`, rows summing to 1),
/// weighted by the class weights `w` (`k`) and averaged.
fn loss(kind: &Loss, head: Head, logits: &Tensor, t: &Tensor, w: &Tensor) -> Tensor {
    let weight = (t * w).sum_dim_intlist(-1, false, Kind::Float);
    let per = match head {
        Head::Softmax => {
            let logp = logits.log_softmax(-1, Kind::Float);
            match kind.kind {
                LossKind::Focal => {
                    let focus = (logp.exp().ones_like() - logp.exp()).pow_tensor_scalar(kind.gamma);
                    -(t * focus * &logp).sum_dim_intlist(-1, false, Kind::Float)
                }
                _ => -(t * &logp).sum_dim_intlist(-1, false, Kind::Float),
            }
        }
        Head::Sigmoid => {
            let z = logits.squeeze_dim(-1).to_kind(Kind::Float);
            let y = t.select(1, 1);
            let ce =
                z.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::None);
            match kind.kind {
                LossKind::Focal => {
                    let p = z.sigmoid();
                    let pt = &y * &p + (y.ones_like() - &y) * (p.ones_like() - &p);
                    let focus = (pt.ones_like() - pt).pow_tensor_scalar(kind.gamma);
                    let ce = ce * focus;
                    match kind.alpha {
                        Some(a) => ce * (&y * a + (y.ones_like() - &y) * (1.0 - a)),
                        None => ce,
                    }
                }
                _ => ce,
            }
        }
    };
    (per * &weight).sum(Kind::Float) / weight.sum(Kind::Float)
}

/// Forward unchanged; the gradient multiplied by `-lambda` on the way back.
fn reverse_gradient(x: &Tensor, lambda: f64) -> Tensor {
    let held = x.detach();
    &held + (x - &held) * (-lambda)
}

/// The adversarial attribute head: pooled features and the label to one logit.
fn adversary(vs: &nn::Path<'_>, features: i64, hidden: i64) -> nn::Sequential {
    if hidden == 0 {
        nn::seq().add(nn::linear(vs / 0, features, 1, Default::default()))
    } else {
        nn::seq()
            .add(nn::linear(vs / 0, features, hidden, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(vs / 2, hidden, 1, Default::default()))
    }
}

/// Moves the average `avg` towards `live` by `1 - decay`: every variable, BatchNorm
/// statistics included.
fn ema_update(avg: &nn::VarStore, live: &nn::VarStore, decay: f64) {
    let _guard = tch::no_grad_guard();
    let src = live.variables();
    for (name, mut t) in avg.variables() {
        if let Some(s) = src.get(&name) {
            let moved = &t * decay + s * (1.0 - decay);
            t.copy_(&moved);
        }
    }
}

/// Checks that the parameters fit the task, in the user's words.
fn check_fit(p: &TrainParams, k: usize) -> Result<(), String> {
    if k != 2 && p.loss.kind == LossKind::Bce {
        return Err(format!(
            "`loss.kind: bce` is for binary tasks, and this dataset has {k} classes; use `cross_entropy` or `focal`"
        ));
    }
    if k != 2 && p.loss.alpha.is_some() {
        return Err(format!(
            "`loss.alpha` weighs the positive class of a binary task, and this dataset has {k} classes; use `class_weighted: true`"
        ));
    }
    if k != 2 && p.sampler.kind == SamplerKind::Ratio {
        return Err(format!(
            "the `ratio` sampler is for binary tasks, and this dataset has {k} classes; use `class_balanced`"
        ));
    }
    Ok(())
}

/// What the model was trained on, for the report's provenance.
pub(crate) fn runtime(device: Device) -> serde_json::Value {
    let device = match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    };
    json!({
        "libtorch": crate::runtime_info().libtorch_version,
        "device": device,
        "cpu_threads": tch::get_num_threads(),
    })
}

fn train(job: &StageJob, p: &TrainParams, data: &Prepared, device: Device) -> Result<(), String> {
    let started = Instant::now();
    let seed = job.seed;
    tch::manual_seed(seed as i64);
    let k = data.catalog.classes.len();
    check_fit(p, k)?;
    let head = Head::for_loss(p.loss.kind, k);
    let images =
        DeviceImages::load(&data.train_cache, device, 4 << 30).map_err(|e| e.to_string())?;
    let val_images =
        DeviceImages::load(&data.val_cache, device, 1 << 30).map_err(|e| e.to_string())?;
    let classes: Vec<usize> = data.train.iter().map(|i| i.class).collect();
    let labels: Vec<i64> = classes.iter().map(|c| *c as i64).collect();
    let val_labels: Vec<u32> = data.val.iter().map(|i| i.class as u32).collect();
    let labels_t = Tensor::from_slice(&labels).to_device(device);

    let mut vs = nn::VarStore::new(device);
    let net = Net::new(
        &vs.root(),
        p.backbone,
        data.channels as i64,
        head.outputs(k),
    );
    let adv = p.debias.as_ref().map(|d| {
        adversary(
            &(vs.root() / "adversary"),
            net.features() + k as i64,
            i64::from(d.hidden),
        )
    });
    let segmentation = p.segmentation.as_ref().map(|_| {
        nn::conv2d(
            vs.root() / "segmentation",
            net.features(),
            1,
            1,
            Default::default(),
        )
    });
    let masks = match &data.train_masks {
        Some(info) => Some(DeviceImages::load(info, device, 1 << 30).map_err(|e| e.to_string())?),
        None => None,
    };
    if let Some(file) = &p.pretrained {
        let path = job.workspace.join(file);
        let loaded = nets::load_pretrained(&vs, &net, &path)?;
        println!(
            "loaded {} tensors from {file}{}{}",
            loaded.copied,
            if loaded.fresh_head {
                "; the classification head starts fresh"
            } else {
                ""
            },
            if loaded.summed_channels {
                "; the first convolution's colour weights were summed for grey images"
            } else {
                ""
            }
        );
    }
    // The averaged network, validated and saved instead of the live one when `ema` is set.
    let ema = match &p.ema {
        Some(e) => {
            let mut avg_vs = nn::VarStore::new(device);
            let avg = Net::new(
                &avg_vs.root(),
                p.backbone,
                data.channels as i64,
                head.outputs(k),
            );
            avg_vs.copy(&vs).map_err(|e| e.to_string())?;
            avg_vs.freeze();
            Some((avg_vs, avg, e.decay))
        }
        None => None,
    };
    let mut opt = nn::AdamW {
        wd: p.weight_decay,
        ..Default::default()
    }
    .build(&vs, p.lr)
    .map_err(|e| e.to_string())?;
    // Class weights: inverse training frequency, normalised to mean 1.
    let mut counts = vec![0f64; k];
    for c in &classes {
        counts[*c] += 1.0;
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
    // Attribute values for the sampler and the adversary.
    let attribute_of = |name: &str| -> Vec<Option<f64>> {
        data.train
            .iter()
            .map(|i| i.attributes.get(name).copied())
            .collect()
    };
    let groups = sampling::groups(
        p.sampler.kind,
        &classes,
        &p.sampler
            .attribute
            .as_deref()
            .map(attribute_of)
            .unwrap_or_default(),
    );
    let draw_weights = sampling::weights(&p.sampler, &classes, &groups);
    let adversary_target = p.debias.as_ref().map(|d| {
        let values = attribute_of(&d.attribute);
        let known: Vec<f32> = values
            .iter()
            .map(|v| f32::from(u8::from(v.is_some())))
            .collect();
        let value: Vec<f32> = values.iter().map(|v| v.unwrap_or(0.0) as f32).collect();
        (
            Tensor::from_slice(&value).to_device(device),
            Tensor::from_slice(&known).to_device(device),
        )
    });
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
    // The best epoch: (its selection figure, its validation loss, its number, its
    // validation probabilities).
    let mut best: Option<(f64, f64, u32, Vec<Vec<f64>>)> = None;
    let selection = Selection::new(job.objective.as_ref(), &data.catalog.classes);
    let selected_by = selection.name(&data.catalog.classes);
    let mut since_best = 0u32;
    let mut step = 0usize;
    let mut stopped = "epochs";
    let mut last_report = Instant::now();
    for epoch in 0..p.epochs {
        let epoch_started = Instant::now();
        let order = sampling::epoch_indices(draw_weights.as_deref(), n, seed, u64::from(epoch));
        let mut mix_rng = Xoshiro256::stream(seed ^ 0x313C_u64, u64::from(epoch));
        let (mut loss_sum, mut adv_sum, mut seg_sum) = (0.0, 0.0, 0.0);
        for (b, chunk) in order.chunks(batch).enumerate() {
            let lr = opt_lr(step, warmup, total_steps, p.lr);
            opt.set_lr(lr);
            let (mut x, mut m) = aug
                .apply_indices(
                    &images,
                    masks.as_ref(),
                    chunk,
                    seed ^ (u64::from(epoch) << 32),
                    (b * batch) as u64,
                )
                .map_err(|e| e.to_string())?;
            let idx = Tensor::from_slice(chunk).to_device(device);
            let y = labels_t.index_select(0, &idx);
            let mut t = y.one_hot(k as i64).to_kind(Kind::Float) * (1.0 - eps) + eps / k as f64;
            let mut a = adversary_target
                .as_ref()
                .map(|(v, m)| (v.index_select(0, &idx), m.index_select(0, &idx)));
            if let Some(mixup) = &p.mixup {
                let lam = sampling::beta(&mut mix_rng, mixup.alpha);
                let perm = epoch_order(chunk.len(), mix_rng.next_u64(), 0);
                let perm = Tensor::from_slice(&perm).to_device(device);
                x = &x * lam + x.index_select(0, &perm) * (1.0 - lam);
                t = &t * lam + t.index_select(0, &perm) * (1.0 - lam);
                m = m.map(|masks| &masks * lam + masks.index_select(0, &perm) * (1.0 - lam));
                a = a.map(|(v, m)| {
                    let mixed = &v * lam + v.index_select(0, &perm) * (1.0 - lam);
                    (mixed, &m * m.index_select(0, &perm))
                });
            }
            let map = net.feature_map(&x, true);
            let pooled = net.pool(&map);
            let logits = net.logits(&pooled, true);
            let mut total = loss(&p.loss, head, &logits, &t, &weights_t);
            let l = total.double_value(&[]);
            if let (Some(s), Some(conv), Some(m)) = (&p.segmentation, &segmentation, &m) {
                let size = m.size();
                let z = map
                    .apply(conv)
                    .upsample_bilinear2d([size[2], size[3]], false, None, None);
                let seg = z.binary_cross_entropy_with_logits::<Tensor>(
                    m,
                    None,
                    None,
                    tch::Reduction::Mean,
                );
                seg_sum += seg.double_value(&[]) * chunk.len() as f64;
                total += seg * s.weight;
            }
            if let (Some(d), Some(adv), Some((v, m))) = (&p.debias, &adv, &a) {
                // The reversal strength ramps up from 0 (Ganin et al. 2016), and the
                // adversary also sees the label, so that only what the features tell about
                // the attribute beyond the label is hidden.
                let progress = step as f64 / total_steps as f64;
                let lambda = d.lambda * (2.0 / (1.0 + (-10.0 * progress).exp()) - 1.0);
                let z = Tensor::cat(&[reverse_gradient(&pooled, lambda), t.shallow_clone()], 1)
                    .apply(adv)
                    .squeeze_dim(-1);
                let per = z.binary_cross_entropy_with_logits::<Tensor>(
                    v,
                    None,
                    None,
                    tch::Reduction::None,
                );
                let adv_loss = (per * m).sum(Kind::Float) / m.sum(Kind::Float).clamp_min(1.0);
                adv_sum += adv_loss.double_value(&[]) * chunk.len() as f64;
                total += adv_loss;
            }
            opt.backward_step(&total);
            if let Some((avg_vs, _, decay)) = &ema {
                // Short runs would otherwise average mostly the random start.
                let d = decay.min((1.0 + step as f64) / (10.0 + step as f64));
                ema_update(avg_vs, &vs, d);
            }
            if !l.is_finite() {
                return Err(format!(
                    "the loss became {l} in epoch {}; lower `lr`",
                    epoch + 1
                ));
            }
            loss_sum += l * chunk.len() as f64;
            step += 1;
            if last_report.elapsed().as_secs_f64() >= 2.0 {
                last_report = Instant::now();
                let done = f64::from(epoch) + (b + 1) as f64 / steps_per_epoch as f64;
                let rate = started.elapsed().as_secs_f64() / done;
                progress(
                    done / f64::from(p.epochs),
                    &format!(
                        "epoch {}/{} batch {}/{steps_per_epoch} loss {:.4} ETA {:.0}s",
                        epoch + 1,
                        p.epochs,
                        b + 1,
                        loss_sum / ((b * batch + chunk.len()) as f64),
                        rate * (f64::from(p.epochs) - done)
                    ),
                );
            }
        }
        let train_loss = loss_sum / n as f64;
        let (eval_net, eval_vs) = match &ema {
            Some((avg_vs, avg, _)) => (avg, avg_vs),
            None => (&net, &vs),
        };
        let probs = predict(eval_net, head, &val_images, &plain, batch, k)?;
        let (metric, val_loss) = selection.measure(&val_labels, &probs);
        let improved = best
            .as_ref()
            .is_none_or(|(m, l, _, _)| beats((metric, val_loss), (*m, *l)));
        if improved {
            nets::save(
                eval_vs,
                &["adversary.", "segmentation."],
                &out.join("model.safetensors"),
            )?;
            best = Some((metric, val_loss, epoch + 1, probs));
            since_best = 0;
        } else {
            since_best += 1;
        }
        let mut line = json!({
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_metric": metric,
            "val_loss": val_loss,
            "lr": opt_lr(step, warmup, total_steps, p.lr),
            "seconds": epoch_started.elapsed().as_secs_f64(),
        });
        if p.debias.is_some() {
            line["adversary_loss"] = json!(adv_sum / n as f64);
        }
        if p.segmentation.is_some() {
            line["segmentation_loss"] = json!(seg_sum / n as f64);
        }
        writeln!(curve, "{line}").ok();
        let elapsed = started.elapsed().as_secs_f64();
        let per_epoch = elapsed / f64::from(epoch + 1);
        progress(
            f64::from(epoch + 1) / f64::from(p.epochs),
            &format!(
                "epoch {}/{} loss {train_loss:.4} val {selected_by} {metric:.4} ETA {:.0}s",
                epoch + 1,
                p.epochs,
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
    vs.freeze();
    let (metric, _, best_epoch, probs) = best.ok_or("no epoch ran")?;
    let epochs_run = curve.lines().count();
    std::fs::write(out.join("curve.jsonl"), curve).map_err(|e| e.to_string())?;
    // The calibration map, fitted on the best epoch's validation predictions; every later
    // use of the model (predictions.csv, `model.predict`, `engine test`) applies it.
    let labels: Vec<u32> = data.val.iter().map(|i| i.class as u32).collect();
    let (calibration, not_fitted) = match Calibration::fit(&labels, &probs) {
        Ok(c) => (c, None),
        Err(e) => {
            eprintln!("warning: the probabilities are not calibrated: {e}");
            (
                Calibration::identity(k),
                Some(format!("not calibrated: {e}")),
            )
        }
    };
    let calibrated = calibration.apply(&probs);
    let ones = vec![1u32; labels.len()];
    let fit = |p: &[Vec<f64>]| {
        json!({
            "brier": calibration::brier(&labels, p, &ones),
            "ece": calibration::ece(&labels, p, &ones),
        })
    };
    let mut calibration_json = serde_json::to_value(&calibration).map_err(|e| e.to_string())?;
    calibration_json["validation"] = json!({"before": fit(&probs), "after": fit(&calibrated)});
    if let Some(note) = &not_fitted {
        calibration_json["note"] = json!(note);
    }
    write_json(&out.join("calibration.json"), &calibration_json)?;
    write_predictions(
        &out.join("predictions.csv"),
        &data.catalog,
        &data.val,
        &calibrated,
    )?;
    write_predictions(
        &out.join("predictions.uncalibrated.csv"),
        &data.catalog,
        &data.val,
        &probs,
    )?;
    let metrics = json!({
        "metric": selected_by,
        "selected_by": "the best validation figure, ties to the lower validation loss",
        "best": metric,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "stopped_by": stopped,
        "train_images": data.train.len(),
        "val_images": data.val.len(),
        "seconds": started.elapsed().as_secs_f64(),
        "runtime": runtime(device),
        "calibration": calibration_json,
    });
    write_json(&out.join("metrics.json"), &metrics)?;
    let config = json!({
        "backbone": p.backbone,
        "image_size": p.image_size,
        "channels": data.channels,
        "classes": data.catalog.classes,
        "head": head.as_str(),
        "target": data.catalog.target,
        "dataset": p.dataset,
        "normalise": {"mean": plain.mean, "std": plain.std},
        "params": p,
        "seed": seed,
    });
    write_json(&out.join("config.json"), &config)?;
    println!(
        "best validation {selected_by} {metric:.4} at epoch {best_epoch} of {epochs_run} ({stopped})"
    );
    Ok(())
}

pub(crate) fn opt_lr(step: usize, warmup: usize, total: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let t = (step - warmup) as f64 / (total - warmup).max(1) as f64;
        peak * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

pub(crate) fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Probabilities `[class][item]` for every image of `images`.
pub fn predict(
    net: &Net,
    head: Head,
    images: &DeviceImages,
    plain: &Augment,
    batch: usize,
    k: usize,
) -> Result<Vec<Vec<f64>>, String> {
    let _guard = tch::no_grad_guard();
    let mut out = vec![Vec::with_capacity(images.len()); k];
    let all: Vec<i64> = (0..images.len() as i64).collect();
    for chunk in all.chunks(batch) {
        let (x, _) = plain
            .apply_indices(images, None, chunk, 0, 0)
            .map_err(|e| e.to_string())?;
        let p = head
            .probabilities(&net.forward_t(&x, false))
            .to_device(Device::Cpu);
        let flat: Vec<f32> = Vec::<f32>::try_from(p.flatten(0, -1)).map_err(|e| e.to_string())?;
        for (i, v) in flat.iter().enumerate() {
            out[i % k].push(f64::from(*v));
        }
    }
    Ok(out)
}

/// What picks the best epoch: the request's objective where probabilities alone give it
/// (an AUC, a class's AUC, a point of the ROC curve, or a multiclass figure read at the
/// most probable class), else the AUC; ties, as when validation saturates at 1.0, go to
/// the lower validation loss (mean cross-entropy).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Selection {
    /// The (binary) AUC, or the mean of the per-class AUCs validation defines.
    Auc,
    /// The binary ROC curve's sensitivity at this specificity.
    SensitivityAtSpecificity(f64),
    /// The binary ROC curve's specificity at this sensitivity.
    SpecificityAtSensitivity(f64),
    /// One class's AUC, one against the rest (a multiclass objective on that class).
    ClassAuc(usize),
    /// A multiclass figure at the most probable class: `balanced_accuracy`, `accuracy` or
    /// `macro_f1`.
    Multiclass(Metric),
}

impl Selection {
    /// The selection for a task of `classes` under `objective`.
    pub(crate) fn new(objective: Option<&Objective>, classes: &[String]) -> Selection {
        let Some(o) = objective else {
            return Selection::Auc;
        };
        let binary = classes.len() == 2;
        if let Some(class) = &o.class
            && !binary
            && let Some(c) = classes.iter().position(|c| {
                c.eq_ignore_ascii_case(class)
                    || engine_core::task::label_of(c).is_some_and(|l| &l == class)
            })
        {
            return Selection::ClassAuc(c);
        }
        match (o.metric, binary) {
            (Metric::SensitivityAtSpecificity, true) => {
                Selection::SensitivityAtSpecificity(o.at_specificity.unwrap_or(0.8))
            }
            (Metric::SpecificityAtSensitivity, true) => {
                Selection::SpecificityAtSensitivity(o.at_sensitivity.unwrap_or(0.9))
            }
            (m @ (Metric::BalancedAccuracy | Metric::Accuracy | Metric::MacroF1), false) => {
                Selection::Multiclass(m)
            }
            _ => Selection::Auc,
        }
    }

    /// The figure's name, as `metrics.json` and the progress line give it.
    pub(crate) fn name(&self, classes: &[String]) -> String {
        match self {
            Selection::Auc if classes.len() == 2 => "auc".into(),
            Selection::Auc => "macro_auc".into(),
            Selection::SensitivityAtSpecificity(_) => "sensitivity_at_specificity".into(),
            Selection::SpecificityAtSensitivity(_) => "specificity_at_sensitivity".into(),
            Selection::ClassAuc(c) => format!("auc/{}", classes[*c]),
            Selection::Multiclass(m) => m.as_str().into(),
        }
    }

    /// The figure on validation (0.5 where undefined, so that selection is never blind),
    /// and the validation loss that breaks ties.
    pub(crate) fn measure(&self, labels: &[u32], probs: &[Vec<f64>]) -> (f64, f64) {
        let k = probs.len();
        let m = if k == 2 {
            let pos: Vec<bool> = labels.iter().map(|l| *l == 1).collect();
            BinaryData::new(&pos, &probs[1])
                .map(|d| match self {
                    Selection::SensitivityAtSpecificity(x)
                    | Selection::SpecificityAtSensitivity(x) => {
                        let m = d.metrics(&BinaryOptions {
                            at_specificity: *x,
                            at_sensitivity: *x,
                        });
                        if matches!(self, Selection::SensitivityAtSpecificity(_)) {
                            m.sensitivity_at_specificity
                        } else {
                            m.specificity_at_sensitivity
                        }
                    }
                    _ => d.auc(),
                })
                .unwrap_or(f64::NAN)
        } else {
            MulticlassData::new(labels, probs)
                .map(|d| {
                    let m = d.metrics();
                    match self {
                        Selection::ClassAuc(c) => m.auc.get(*c).copied().unwrap_or(f64::NAN),
                        Selection::Multiclass(Metric::BalancedAccuracy) => m.balanced_accuracy,
                        Selection::Multiclass(Metric::Accuracy) => m.accuracy,
                        Selection::Multiclass(_) => m.macro_f1,
                        // Over the classes validation has: a rare class missing from a small
                        // validation split would otherwise leave the macro AUC undefined
                        // and model selection blind.
                        _ => {
                            let auc: Vec<f64> =
                                m.auc.into_iter().filter(|a| a.is_finite()).collect();
                            auc.iter().sum::<f64>() / auc.len() as f64
                        }
                    }
                })
                .unwrap_or(f64::NAN)
        };
        let loss = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                -probs
                    .get(l as usize)
                    .and_then(|p| p.get(i))
                    .copied()
                    .unwrap_or(0.0)
                    .max(1e-12)
                    .ln()
            })
            .sum::<f64>()
            / labels.len().max(1) as f64;
        (if m.is_finite() { m } else { 0.5 }, loss)
    }
}

/// Whether an epoch that measured `(metric, loss)` beats the best so far: a higher
/// figure, or the same figure at a lower loss.
pub(crate) fn beats(new: (f64, f64), best: (f64, f64)) -> bool {
    new.0 > best.0 || (new.0 == best.0 && new.1 < best.1)
}

/// `id,label,prob` (binary) or `id,label,<class>...` (multiclass), plus `patient` (hashed)
/// and each attribute, in the form `engine metrics` reads.
pub(crate) fn write_predictions(
    path: &Path,
    cat: &Catalog,
    items: &[Item],
    probs: &[Vec<f64>],
) -> Result<(), String> {
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
    for (i, item) in items.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_missing_from_validation_does_not_blind_model_selection() {
        // Three classes; validation has no case of the third.
        let labels = [0u32, 0, 1, 1];
        let good = vec![
            vec![0.9, 0.8, 0.1, 0.2],
            vec![0.05, 0.1, 0.8, 0.7],
            vec![0.05, 0.1, 0.1, 0.1],
        ];
        let bad = vec![
            vec![0.1, 0.2, 0.9, 0.8],
            vec![0.8, 0.7, 0.05, 0.1],
            vec![0.1, 0.1, 0.05, 0.1],
        ];
        let s = Selection::Auc;
        assert_eq!(s.measure(&labels, &good).0, 1.0);
        assert_eq!(s.measure(&labels, &bad).0, 0.0);
    }

    #[test]
    fn the_objective_picks_the_epoch_and_the_loss_breaks_ties() {
        let classes = |names: &[&str]| names.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        let objective = |v: serde_json::Value| serde_json::from_value::<Objective>(v).unwrap();
        let eight = classes(&["AK", "MEL", "NV"]);
        let mel = objective(json!({"metric": "sensitivity", "class": "melanoma"}));
        assert_eq!(Selection::new(Some(&mel), &eight), Selection::ClassAuc(1));
        assert_eq!(Selection::ClassAuc(1).name(&eight), "auc/MEL");
        let binary = classes(&["normal", "pneumothorax"]);
        let at = objective(json!({"metric": "sensitivity_at_specificity", "at_specificity": 0.9}));
        assert_eq!(
            Selection::new(Some(&at), &binary),
            Selection::SensitivityAtSpecificity(0.9)
        );
        // A figure that needs a threshold is stood for by the AUC.
        let sens = objective(json!({"metric": "sensitivity"}));
        assert_eq!(Selection::new(Some(&sens), &binary), Selection::Auc);
        assert_eq!(Selection::new(None, &binary).name(&binary), "auc");

        // Two epochs that both separate validation perfectly: the surer one wins.
        let labels = [0u32, 0, 1, 1];
        let sure = vec![vec![0.99, 0.98, 0.02, 0.01], vec![0.01, 0.02, 0.98, 0.99]];
        let unsure = vec![vec![0.6, 0.55, 0.45, 0.4], vec![0.4, 0.45, 0.55, 0.6]];
        let (a, b) = (
            Selection::Auc.measure(&labels, &sure),
            Selection::Auc.measure(&labels, &unsure),
        );
        assert_eq!((a.0, b.0), (1.0, 1.0));
        assert!(beats(a, b) && !beats(b, a) && !beats(a, a));
        assert!(beats((0.9, 5.0), (0.8, 0.1)), "the figure comes first");
    }
}
