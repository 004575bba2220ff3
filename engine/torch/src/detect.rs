//! The `detector.train` stage: a single-stage, anchor-free object detector trained on a YOLO
//! dataset's boxed training images (and its image-level negatives, as background), model
//! selection by validation mAP@50 (mAP@50:95 when the request's objective is it; ties go to
//! the other, then to the lower training loss), and the best checkpoint, the validation ground truth and
//! detections in COCO format, the curve and the metrics written out. The test split is
//! never opened.
//!
//! **The network.** A plain convolutional backbone (conv, batch norm, SiLU; five stride-2
//! steps, `width` channels doubling to at most `8 * width`), a feature pyramid (1x1 lateral
//! convolutions, top-down nearest upsampling and addition, a 3x3 convolution per level) at
//! strides 8, 16 and 32, and one head shared by the levels: two 3x3 convolutions with group
//! norm, then per cell an objectness logit, one logit per box class, and four distances from
//! the cell's centre to the box's left, top, right and bottom edges (`exp` of the output
//! times the stride).
//!
//! **Target assignment.** A cell is responsible for a ground-truth box when its centre lies
//! inside the box and within `center_radius` strides of the box's centre, on every level
//! (FCOS's centre sampling without its size ranges, which small images do not need); a cell
//! that several boxes claim takes the smallest. A box no cell claims (smaller than a cell)
//! is given the cell of the finest level that holds its centre.
//!
//! **Losses.** Objectness: sigmoid focal loss (gamma 2, alpha 0.25) over every cell; class:
//! binary cross-entropy on the responsible cells; box: GIoU loss on the responsible cells,
//! times `box_weight`. All three are divided by the number of responsible cells. Label
//! smoothing moves 1 to `1 - e/2` and 0 to `e/2` in the objectness and class targets.
//!
//! **Inference.** A cell's score for a class is `sigmoid(objectness) * sigmoid(class)`;
//! scores above 0.001 enter greedy non-maximum suppression per class at `nms_iou`, and the
//! `max_detections` best of an image are kept, mapped back from the letterbox to the source
//! image's pixels.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use engine_core::job::StageJob;
use engine_core::manifest::StageParams;
use engine_core::metrics::detection::{Category, DetBox, GroundTruth, GtBox};
use engine_core::metrics::rng::Xoshiro256;
use engine_core::metrics::{DetectionData, DetectionOptions};
use engine_core::stages::detect::DetectorParams;
use engine_data::imagecache::{self, Letterbox};
use engine_data::{Catalog, Item};
use serde_json::json;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::images::{DeviceImages, epoch_order};
use crate::train::{normalisation, opt_lr, progress, runtime, write_json};

/// The pyramid's strides.
pub const STRIDES: [i64; 3] = [8, 16, 32];
/// Scores below this never become detections.
const MIN_SCORE: f64 = 0.001;
/// Candidates per image before suppression.
const MAX_CANDIDATES: usize = 1000;

/// Runs a `detector.train` job; the error says what went wrong in a sentence.
pub fn run_stage(job: &StageJob) -> Result<(), String> {
    let StageParams::DetectorTrain(p) = job.stage_params()? else {
        return Err("not a detector.train job".into());
    };
    let device = crate::parse_device(&p.device).map_err(|e| e.to_string())?;
    crate::train::exclusive(p.threads.unwrap_or(job.cpus), || {
        let data = prepare(job, &p)?;
        train(job, &p, &data, device)
    })
}

/// A box in the letterboxed square's pixels: class, then `x0, y0, x1, y1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SquareBox {
    pub class: usize,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl SquareBox {
    fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }
}

/// An image the detector trains, validates or is tested on.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    item: Item,
    letterbox: Letterbox,
    boxes: Vec<SquareBox>,
    /// The image's loss weight (below 1 for a down-weighted pseudo-label).
    weight: f32,
}

struct Prepared {
    catalog: Catalog,
    train: Vec<Sample>,
    val: Vec<Sample>,
    train_images: imagecache::CacheInfo,
    val_images: imagecache::CacheInfo,
    channels: usize,
    /// Training images positive at image level but without boxes, left out.
    unboxed_positives: usize,
    /// Training images whose boxes came from `pseudo_label` stages.
    pseudo_labelled: usize,
}

/// Whether an image can teach or test a detector: boxed (with or without boxes), or an
/// image-level negative (nothing to find).
pub(crate) fn usable(item: &Item, negatives: bool) -> bool {
    item.boxes.is_some() || (negatives && item.class == 0)
}

fn prepare(job: &StageJob, p: &DetectorParams) -> Result<Prepared, String> {
    let fingerprint = job.fingerprint(&p.dataset);
    let (spec, root, catalog) = crate::train::read_dataset(job, &p.dataset)?;
    if catalog.box_classes.is_empty() {
        return Err(format!(
            "dataset `{}` has no box classes; a detector trains on a `yolo` dataset",
            p.dataset
        ));
    }
    let partition = crate::train::split(spec, catalog)?;
    // Pseudo-labels fill in the boxes of unboxed positives, with their weights.
    let pseudo = read_pseudo_labels(job, p)?;
    let mut weights = std::collections::HashMap::new();
    let mut pseudo_labelled = 0;
    let train_items: Vec<Item> = partition
        .train()
        .iter()
        .map(|i| {
            let mut i = i.clone();
            if i.boxes.is_none()
                && i.class != 0
                && let Some((boxes, w)) = pseudo.get(&partition.catalog().shown_id(&i.id))
            {
                i.boxes = Some(boxes.clone());
                weights.insert(i.id.clone(), *w);
                pseudo_labelled += 1;
            }
            i
        })
        .collect();
    let unboxed_positives = train_items
        .iter()
        .filter(|i| i.boxes.is_none() && i.class != 0)
        .count();
    let train: Vec<Item> = train_items
        .into_iter()
        .filter(|i| usable(i, p.unboxed_negatives))
        .collect();
    // Validation always counts image-level negatives: they are images with nothing to find.
    let val: Vec<Item> = partition
        .val()
        .iter()
        .filter(|i| usable(i, true))
        .cloned()
        .collect();
    if !train
        .iter()
        .any(|i| i.boxes.as_ref().is_some_and(|b| !b.is_empty()))
    {
        return Err(format!(
            "dataset `{}` has no boxes in its training split; a detector needs some",
            p.dataset
        ));
    }
    if val.is_empty() {
        return Err(format!(
            "dataset `{}` has no validation image with boxes or a negative label to select the model on",
            p.dataset
        ));
    }
    let catalog = partition.catalog().clone();
    let first = engine_data::image::decode(&root.join(&train[0].path))
        .map_err(|e| format!("{}: {e}", catalog.shown_item(&train[0])))?;
    let channels = usize::from(first.channels);
    let size = p.image_size as usize;
    let mut out = Vec::new();
    for (name, items) in [("training", &train), ("validation", &val)] {
        let what = Images {
            fingerprint,
            root,
            catalog: &catalog,
            size,
            channels,
        };
        out.push(samples(job, &what, items, name, &weights)?);
    }
    let (val, val_images) = out.pop().ok_or("no validation images")?;
    let (train, train_images) = out.pop().ok_or("no training images")?;
    Ok(Prepared {
        catalog,
        train,
        val,
        train_images,
        val_images,
        channels,
        unboxed_positives,
        pseudo_labelled,
    })
}

/// Where a set of images comes from and how it is letterboxed.
pub(crate) struct Images<'a> {
    pub fingerprint: &'a str,
    pub root: &'a std::path::Path,
    pub catalog: &'a Catalog,
    pub size: usize,
    pub channels: usize,
}

/// The letterboxed images of `items` with their boxes in the square's pixels (and each
/// image's loss weight from `weights`, 1 when absent); an image that cannot be decoded is
/// an error.
pub(crate) fn samples(
    job: &StageJob,
    what: &Images<'_>,
    items: &[Item],
    name: &str,
    weights: &std::collections::HashMap<String, f32>,
) -> Result<(Vec<Sample>, imagecache::CacheInfo), String> {
    let size = what.size;
    let (info, sizes, failed) = letterboxed(
        job,
        what.fingerprint,
        what.root,
        items,
        size,
        what.channels,
        name,
    )?;
    if let Some(f) = failed.first() {
        return Err(format!(
            "{} cannot be decoded ({}); {} {name} image(s) in all",
            what.catalog.shown_item(&items[f.index]),
            f.reason,
            failed.len()
        ));
    }
    let samples = items
        .iter()
        .zip(&sizes)
        .map(|(item, &(w, h))| {
            let letterbox = Letterbox::of(w, h, size);
            let boxes = item
                .boxes
                .iter()
                .flatten()
                .map(|b| {
                    let (x0, y0) = letterbox.to_square(
                        f64::from(b.cx - b.w / 2.0) * f64::from(w),
                        f64::from(b.cy - b.h / 2.0) * f64::from(h),
                    );
                    let (x1, y1) = letterbox.to_square(
                        f64::from(b.cx + b.w / 2.0) * f64::from(w),
                        f64::from(b.cy + b.h / 2.0) * f64::from(h),
                    );
                    SquareBox {
                        class: b.class,
                        x0: x0 as f32,
                        y0: y0 as f32,
                        x1: x1 as f32,
                        y1: y1 as f32,
                    }
                })
                .collect();
            Sample {
                item: item.clone(),
                letterbox,
                boxes,
                weight: weights.get(&item.id).copied().unwrap_or(1.0),
            }
        })
        .collect();
    Ok((samples, info))
}

/// The boxes (and loss weights) the `pseudo_label` stages in `from` wrote, by image id as
/// outputs show it.
fn read_pseudo_labels(
    job: &StageJob,
    p: &DetectorParams,
) -> Result<std::collections::HashMap<String, (Vec<engine_data::BoxAnn>, f32)>, String> {
    let mut out = std::collections::HashMap::new();
    for stage in &p.from {
        let file = job
            .upstream
            .get(stage)
            .ok_or_else(|| format!("no outputs of stage `{stage}`"))?
            .join("pseudo_labels.json");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("stage `{stage}` left no readable pseudo_labels.json: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("the pseudo_labels.json of stage `{stage}` is not JSON: {e}"))?;
        for img in v["images"].as_array().into_iter().flatten() {
            let Some(id) = img["id"].as_str() else {
                continue;
            };
            let boxes: Vec<engine_data::BoxAnn> = img["boxes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| {
                    Some(engine_data::BoxAnn {
                        class: b["class"].as_u64()? as usize,
                        cx: b["cx"].as_f64()? as f32,
                        cy: b["cy"].as_f64()? as f32,
                        w: b["w"].as_f64()? as f32,
                        h: b["h"].as_f64()? as f32,
                    })
                })
                .collect();
            let w = img["weight"].as_f64().unwrap_or(1.0) as f32;
            out.insert(id.to_owned(), (boxes, w));
        }
    }
    Ok(out)
}

fn conv_bn(vs: &nn::Path<'_>, cin: i64, cout: i64, stride: i64) -> nn::SequentialT {
    let cfg = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(vs / "conv", cin, cout, 3, cfg))
        .add(nn::batch_norm2d(vs / "bn", cout, Default::default()))
        .add_fn(|x| x.silu())
}

/// The detector network.
#[derive(Debug)]
pub struct Detector {
    stages: Vec<nn::SequentialT>,
    lateral: Vec<nn::Conv2D>,
    smooth: Vec<nn::SequentialT>,
    tower: Vec<(nn::Conv2D, nn::GroupNorm)>,
    objectness: nn::Conv2D,
    class: nn::Conv2D,
    regress: nn::Conv2D,
    classes: i64,
}

/// The head's raw outputs for a batch, cells of every level in order (finest first).
#[derive(Debug)]
pub struct Outputs {
    /// `N x A` objectness logits.
    pub objectness: Tensor,
    /// `N x A x K` class logits.
    pub class: Tensor,
    /// `N x A x 4` distances (left, top, right, bottom) in pixels.
    pub distances: Tensor,
}

impl Detector {
    /// A detector for `channels`-channel images and `classes` box classes.
    pub fn new(vs: &nn::Path<'_>, channels: i64, width: i64, classes: i64) -> Detector {
        let w = width;
        let c = [w, 2 * w, 4 * w, 8 * w, 8 * w];
        let mut stages = Vec::new();
        let mut cin = channels;
        for (i, &cout) in c.iter().enumerate() {
            let s = vs / "backbone" / i;
            stages.push(
                nn::seq_t()
                    .add(conv_bn(&(&s / 0), cin, cout, 2))
                    .add(conv_bn(&(&s / 1), cout, cout, 1)),
            );
            cin = cout;
        }
        let f = 4 * w;
        let lateral = [c[2], c[3], c[4]]
            .iter()
            .enumerate()
            .map(|(i, &cin)| nn::conv2d(vs / "lateral" / i, cin, f, 1, Default::default()))
            .collect();
        let smooth = (0..3)
            .map(|i| conv_bn(&(vs / "smooth" / i), f, f, 1))
            .collect();
        let groups = if f % 8 == 0 { 8 } else { 1 };
        let tower = (0..2)
            .map(|i| {
                let t = vs / "head" / "tower" / i;
                (
                    nn::conv2d(
                        &t / "conv",
                        f,
                        f,
                        3,
                        nn::ConvConfig {
                            padding: 1,
                            ..Default::default()
                        },
                    ),
                    nn::group_norm(&t / "gn", groups, f, Default::default()),
                )
            })
            .collect();
        // A prior of 1% objects per cell, as RetinaNet starts, keeps the first steps calm.
        let prior = -(99.0f64).ln();
        let biased = |name: &str, out: i64, bias: f64| {
            nn::conv2d(
                vs / "head" / name,
                f,
                out,
                1,
                nn::ConvConfig {
                    bs_init: nn::Init::Const(bias),
                    ws_init: nn::Init::Randn {
                        mean: 0.0,
                        stdev: 0.01,
                    },
                    ..Default::default()
                },
            )
        };
        Detector {
            stages,
            lateral,
            smooth,
            tower,
            objectness: biased("objectness", 1, prior),
            class: biased("class", classes, 0.0),
            regress: biased("regress", 4, 0.0),
            classes,
        }
    }

    /// The head's outputs for a normalised batch `N x C x S x S` (S a multiple of 32).
    pub fn forward(&self, x: &Tensor, train: bool) -> Outputs {
        let mut feats = Vec::new();
        let mut h = x.shallow_clone();
        for (i, s) in self.stages.iter().enumerate() {
            h = h.apply_t(s, train);
            if i >= 2 {
                feats.push(h.shallow_clone());
            }
        }
        // Top-down: P5, then P4 = lateral(C4) + up(P5), then P3.
        let mut levels: Vec<Tensor> = Vec::with_capacity(3);
        let mut above: Option<Tensor> = None;
        for i in (0..3).rev() {
            let mut l = feats[i].apply(&self.lateral[i]);
            if let Some(a) = &above {
                let size = l.size();
                l += a.upsample_nearest2d([size[2], size[3]], None, None);
            }
            above = Some(l.shallow_clone());
            levels.push(l.apply_t(&self.smooth[i], train));
        }
        // Finest first, as the cells are listed.
        levels.reverse();
        let n = x.size()[0];
        let (mut obj, mut cls, mut dist) = (Vec::new(), Vec::new(), Vec::new());
        for (level, stride) in levels.iter().zip(STRIDES) {
            let mut t = level.shallow_clone();
            for (conv, gn) in &self.tower {
                t = t.apply(conv).apply(gn).silu();
            }
            let flat = |z: Tensor, k: i64| z.view([n, k, -1]).permute([0, 2, 1]);
            obj.push(flat(t.apply(&self.objectness), 1).squeeze_dim(-1));
            cls.push(flat(t.apply(&self.class), self.classes));
            let d = flat(t.apply(&self.regress), 4).clamp(-6.0, 6.0).exp() * stride as f64;
            dist.push(d);
        }
        Outputs {
            objectness: Tensor::cat(&obj, 1),
            class: Tensor::cat(&cls, 1),
            distances: Tensor::cat(&dist, 1),
        }
    }
}

/// The centre (x, y) and stride of every cell of a `size` image, finest level first.
pub fn cells(size: i64) -> Vec<(f32, f32, f32)> {
    let mut out = Vec::new();
    for s in STRIDES {
        let g = size / s;
        for y in 0..g {
            for x in 0..g {
                out.push((
                    (x as f32 + 0.5) * s as f32,
                    (y as f32 + 0.5) * s as f32,
                    s as f32,
                ));
            }
        }
    }
    out
}

/// The box each cell is responsible for (an index into `boxes`), by the rule in the module's
/// documentation.
pub fn assign(cells: &[(f32, f32, f32)], boxes: &[SquareBox], radius: f32) -> Vec<Option<usize>> {
    let mut out = vec![None; cells.len()];
    for (a, &(px, py, s)) in cells.iter().enumerate() {
        let mut best: Option<(usize, f32)> = None;
        for (j, b) in boxes.iter().enumerate() {
            let (cx, cy) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
            let inside = px > b.x0 && px < b.x1 && py > b.y0 && py < b.y1;
            let near = (px - cx).abs() < radius * s && (py - cy).abs() < radius * s;
            if inside && near && best.is_none_or(|(_, area)| b.area() < area) {
                best = Some((j, b.area()));
            }
        }
        out[a] = best.map(|(j, _)| j);
    }
    // A box smaller than a cell: the finest cell holding its centre.
    for (j, b) in boxes.iter().enumerate() {
        if out.contains(&Some(j)) {
            continue;
        }
        let (cx, cy) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
        if let Some(a) = cells
            .iter()
            .position(|&(px, py, s)| (px - cx).abs() <= s / 2.0 && (py - cy).abs() <= s / 2.0)
        {
            out[a] = Some(j);
        }
    }
    out
}

/// Intersection over union of two `x0, y0, x1, y1` boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// A detection in the square's pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub class: usize,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// Greedy non-maximum suppression per class: by descending score, a box overlapping a kept
/// box of its class by more than `threshold` is dropped; at most `keep` survive.
pub fn nms(mut dets: Vec<Detection>, threshold: f32, keep: usize) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out: Vec<Detection> = Vec::new();
    for d in dets {
        if out.len() >= keep {
            break;
        }
        if out
            .iter()
            .all(|k| k.class != d.class || iou(k.bbox, d.bbox) <= threshold)
        {
            out.push(d);
        }
    }
    out
}

/// The loss of a batch against its boxes; also returns the number of responsible cells.
fn loss(
    out: &Outputs,
    targets: &[Vec<SquareBox>],
    weights: &[f32],
    cells: &[(f32, f32, f32)],
    p: &DetectorParams,
    device: Device,
) -> (Tensor, f64) {
    let (n, a) = (targets.len(), cells.len());
    let k = out.class.size()[2] as usize;
    let mut obj_t = vec![0f32; n * a];
    let mut cls_t = Vec::new();
    let mut box_t = Vec::new();
    let mut pos_idx = Vec::new();
    let mut pos_w = Vec::new();
    for (i, boxes) in targets.iter().enumerate() {
        for (c, owner) in assign(cells, boxes, p.center_radius as f32)
            .iter()
            .enumerate()
        {
            if let Some(j) = owner {
                let b = boxes[*j];
                obj_t[i * a + c] = 1.0;
                pos_idx.push((i * a + c) as i64);
                pos_w.push(weights[i]);
                let mut one = vec![0f32; k];
                one[b.class.min(k - 1)] = 1.0;
                cls_t.extend(one);
                box_t.extend([b.x0, b.y0, b.x1, b.y1]);
            }
        }
    }
    let e = p.label_smoothing as f32;
    let smooth = |v: &mut [f32]| {
        for x in v {
            *x = *x * (1.0 - e) + e / 2.0;
        }
    };
    let positives = pos_idx.len().max(1) as f64;
    let mut obj_smooth = obj_t.clone();
    smooth(&mut obj_smooth);
    let y = Tensor::from_slice(&obj_smooth)
        .to_device(device)
        .view([n as i64, a as i64]);
    // Sigmoid focal loss (gamma 2, alpha 0.25) on objectness, every cell.
    let z = out.objectness.to_kind(Kind::Float);
    let prob = z.sigmoid();
    let ce = z.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::None);
    let pt = &prob * &y + (prob.ones_like() - &prob) * (y.ones_like() - &y);
    let alpha = &y * 0.25 + (y.ones_like() - &y) * 0.75;
    let image_w = Tensor::from_slice(weights)
        .to_device(device)
        .view([n as i64, 1]);
    let obj_loss = (ce * (pt.ones_like() - pt).pow_tensor_scalar(2.0) * alpha * image_w)
        .sum(Kind::Float)
        / positives;
    if pos_idx.is_empty() {
        return (obj_loss, 0.0);
    }
    let idx = Tensor::from_slice(&pos_idx).to_device(device);
    let np = pos_idx.len() as i64;
    smooth(&mut cls_t);
    let cls_y = Tensor::from_slice(&cls_t)
        .to_device(device)
        .view([np, k as i64]);
    let cls_z = out
        .class
        .view([(n * a) as i64, k as i64])
        .index_select(0, &idx)
        .to_kind(Kind::Float);
    let pos_w = Tensor::from_slice(&pos_w).to_device(device);
    let cls_loss = (cls_z
        .binary_cross_entropy_with_logits::<Tensor>(&cls_y, None, None, tch::Reduction::None)
        .sum_dim_intlist(-1, false, Kind::Float)
        * &pos_w)
        .sum(Kind::Float)
        / positives;
    // GIoU on the responsible cells.
    let centres: Vec<f32> = pos_idx
        .iter()
        .flat_map(|&g| {
            let (px, py, _) = cells[g as usize % a];
            [px, py]
        })
        .collect();
    let centres = Tensor::from_slice(&centres).to_device(device).view([np, 2]);
    let d = out
        .distances
        .view([(n * a) as i64, 4])
        .index_select(0, &idx)
        .to_kind(Kind::Float);
    let pred = Tensor::stack(
        &[
            centres.select(1, 0) - d.select(1, 0),
            centres.select(1, 1) - d.select(1, 1),
            centres.select(1, 0) + d.select(1, 2),
            centres.select(1, 1) + d.select(1, 3),
        ],
        1,
    );
    let gt = Tensor::from_slice(&box_t).to_device(device).view([np, 4]);
    let g = giou(&pred, &gt);
    let box_loss = ((g.ones_like() - g) * &pos_w).sum(Kind::Float) / positives;
    (
        obj_loss + cls_loss + box_loss * p.box_weight,
        pos_idx.len() as f64,
    )
}

/// Generalised IoU of matching rows of two `M x 4` box tensors (`x0, y0, x1, y1`).
fn giou(a: &Tensor, b: &Tensor) -> Tensor {
    let (ax0, ay0, ax1, ay1) = (
        a.select(1, 0),
        a.select(1, 1),
        a.select(1, 2),
        a.select(1, 3),
    );
    let (bx0, by0, bx1, by1) = (
        b.select(1, 0),
        b.select(1, 1),
        b.select(1, 2),
        b.select(1, 3),
    );
    let iw = (ax1.minimum(&bx1) - ax0.maximum(&bx0)).clamp_min(0.0);
    let ih = (ay1.minimum(&by1) - ay0.maximum(&by0)).clamp_min(0.0);
    let inter = &iw * &ih;
    let area_a = (&ax1 - &ax0).clamp_min(0.0) * (&ay1 - &ay0).clamp_min(0.0);
    let area_b = (&bx1 - &bx0).clamp_min(0.0) * (&by1 - &by0).clamp_min(0.0);
    let union = area_a + area_b - &inter + 1e-7;
    let cw = ax1.maximum(&bx1) - ax0.minimum(&bx0);
    let ch = ay1.maximum(&by1) - ay0.minimum(&by0);
    let hull = cw * ch + 1e-7;
    &inter / &union - (&hull - &union) / &hull
}

fn unif(rng: &mut Xoshiro256, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// The box-aware augmentation of strength `strength` for sample `index` of a seeded stream:
/// a horizontal flip, a zoom about the centre and a shift (the boxes move with the image; a
/// box left less than a quarter inside the image, or under 2 pixels, is dropped), brightness
/// and contrast.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxAugment {
    flip: bool,
    zoom: f64,
    shift: (f64, f64),
    brightness: f64,
    contrast: f64,
}

impl BoxAugment {
    /// The parameters of one sample.
    pub fn draw(strength: f64, seed: u64, index: u64) -> BoxAugment {
        let mut r = Xoshiro256::stream(seed ^ 0x00DE_7EC7_u64, index);
        let s = strength;
        BoxAugment {
            flip: s > 0.0 && unif(&mut r, 0.0, 1.0) < 0.5,
            zoom: unif(&mut r, 1.0 - 0.3 * s, 1.0 + 0.3 * s),
            shift: (
                unif(&mut r, -0.15 * s, 0.15 * s),
                unif(&mut r, -0.15 * s, 0.15 * s),
            ),
            brightness: unif(&mut r, 1.0 - 0.3 * s, 1.0 + 0.3 * s),
            contrast: unif(&mut r, 1.0 - 0.3 * s, 1.0 + 0.3 * s),
        }
    }

    /// The `affine_grid` matrix: output coordinates (-1 to 1) to input coordinates.
    fn theta(&self) -> [f32; 6] {
        let f = if self.flip { -1.0 } else { 1.0 };
        let (tx, ty) = (2.0 * self.shift.0, 2.0 * self.shift.1);
        let z = self.zoom;
        [
            (f / z) as f32,
            0.0,
            (-f * tx / z) as f32,
            0.0,
            (1.0 / z) as f32,
            (-ty / z) as f32,
        ]
    }

    /// The boxes of an image `size` pixels wide, moved as the image is.
    pub fn boxes(&self, boxes: &[SquareBox], size: f32) -> Vec<SquareBox> {
        let f = if self.flip { -1.0 } else { 1.0 };
        let (z, tx, ty) = (
            self.zoom as f32,
            2.0 * self.shift.0 as f32,
            2.0 * self.shift.1 as f32,
        );
        let map = |v: f32, flip: f32, t: f32| {
            ((z * flip * (2.0 * v / size - 1.0) + t) + 1.0) * size / 2.0
        };
        boxes
            .iter()
            .filter_map(|b| {
                let (xa, xb) = (map(b.x0, f, tx), map(b.x1, f, tx));
                let (x0, x1) = (xa.min(xb), xa.max(xb));
                let (y0, y1) = (map(b.y0, 1.0, ty), map(b.y1, 1.0, ty));
                let moved = SquareBox {
                    class: b.class,
                    x0,
                    y0,
                    x1,
                    y1,
                };
                let clipped = SquareBox {
                    class: b.class,
                    x0: x0.clamp(0.0, size),
                    y0: y0.clamp(0.0, size),
                    x1: x1.clamp(0.0, size),
                    y1: y1.clamp(0.0, size),
                };
                let keep = clipped.area() >= 0.25 * moved.area()
                    && clipped.x1 - clipped.x0 >= 2.0
                    && clipped.y1 - clipped.y0 >= 2.0;
                keep.then_some(clipped)
            })
            .collect()
    }
}

/// A uint8 batch as normalised floats, each sample warped by its augmentation (or none).
fn to_input(batch: &Tensor, augs: Option<&[BoxAugment]>, channels: usize) -> Tensor {
    let size = batch.size();
    let (n, c) = (size[0], size[1]);
    let dev = batch.device();
    let mut x = batch.to_kind(Kind::Float) / 255.0;
    if let Some(augs) = augs {
        let theta: Vec<f32> = augs.iter().flat_map(BoxAugment::theta).collect();
        let theta = Tensor::from_slice(&theta).view([n, 2, 3]).to_device(dev);
        let grid = Tensor::affine_grid_generator(&theta, [n, c, size[2], size[3]], false);
        // Bilinear, zeros outside (the letterbox's own padding is black too).
        x = x.grid_sampler_2d(&grid, 0, 0, false);
        let b: Vec<f32> = augs.iter().map(|a| a.brightness as f32).collect();
        let k: Vec<f32> = augs.iter().map(|a| a.contrast as f32).collect();
        let b = Tensor::from_slice(&b).view([n, 1, 1, 1]).to_device(dev);
        let k = Tensor::from_slice(&k).view([n, 1, 1, 1]).to_device(dev);
        let mean = x.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
        x = ((&x - &mean) * &k + &mean) * &b;
        x = x.clamp(0.0, 1.0);
    }
    let (mean, std) = normalisation(channels);
    let m = Tensor::from_slice(
        &mean[..c as usize]
            .iter()
            .map(|v| *v as f32)
            .collect::<Vec<_>>(),
    )
    .view([1, c, 1, 1])
    .to_device(dev);
    let s = Tensor::from_slice(
        &std[..c as usize]
            .iter()
            .map(|v| *v as f32)
            .collect::<Vec<_>>(),
    )
    .view([1, c, 1, 1])
    .to_device(dev);
    (x - m) / s
}

/// Detections of every image of `images`, in each image's square pixels.
pub fn detect(
    net: &Detector,
    images: &DeviceImages,
    channels: usize,
    batch: usize,
    nms_iou: f64,
    keep: usize,
) -> Result<Vec<Vec<Detection>>, String> {
    let _guard = tch::no_grad_guard();
    let all: Vec<i64> = (0..images.len() as i64).collect();
    let mut out = Vec::with_capacity(images.len());
    let mut grid: Option<Vec<(f32, f32, f32)>> = None;
    for chunk in all.chunks(batch.max(1)) {
        let x = images.batch(chunk).map_err(|e| e.to_string())?;
        let cells = grid.get_or_insert_with(|| cells(x.size()[3])).clone();
        let o = net.forward(&to_input(&x, None, channels), false);
        let score = (o.objectness.sigmoid().unsqueeze(-1) * o.class.sigmoid())
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        let dist = o.distances.to_kind(Kind::Float).to_device(Device::Cpu);
        let (n, a, k) = (chunk.len(), cells.len(), net.classes as usize);
        let score = Vec::<f32>::try_from(score.flatten(0, -1)).map_err(|e| e.to_string())?;
        let dist = Vec::<f32>::try_from(dist.flatten(0, -1)).map_err(|e| e.to_string())?;
        for i in 0..n {
            let mut cand = Vec::new();
            for (c, &(px, py, _)) in cells.iter().enumerate() {
                for cls in 0..k {
                    let s = score[(i * a + c) * k + cls];
                    if f64::from(s) > MIN_SCORE {
                        let d = &dist[(i * a + c) * 4..(i * a + c) * 4 + 4];
                        cand.push(Detection {
                            class: cls,
                            score: s,
                            bbox: [px - d[0], py - d[1], px + d[2], py + d[3]],
                        });
                    }
                }
            }
            cand.sort_by(|a, b| b.score.total_cmp(&a.score));
            cand.truncate(MAX_CANDIDATES);
            out.push(nms(cand, nms_iou as f32, keep));
        }
    }
    Ok(out)
}

/// A detector read back from a `detector.train` stage's outputs.
#[derive(Debug)]
pub struct Trained {
    /// The network, its weights loaded.
    pub net: Detector,
    /// Its variables.
    pub vs: nn::VarStore,
    /// The stage's `config.json`.
    pub config: serde_json::Value,
}

impl Trained {
    /// Reads `config.json` and `model.safetensors` from `dir`, the outputs of stage `stage`.
    pub fn load(dir: &std::path::Path, stage: &str, device: Device) -> Result<Trained, String> {
        let text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| format!("stage `{stage}` left no readable config.json: {e}"))?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("the config.json of stage `{stage}` is not JSON: {e}"))?;
        if config["kind"] != "detector" {
            return Err(format!("stage `{stage}` did not train a detector"));
        }
        let num = |k: &str| {
            config[k]
                .as_i64()
                .ok_or_else(|| format!("the config.json of stage `{stage}` has no `{k}`"))
        };
        let classes = config["box_classes"].as_array().map_or(0, Vec::len) as i64;
        let vs = nn::VarStore::new(device);
        let net = Detector::new(&vs.root(), num("channels")?, num("width")?, classes.max(1));
        let path = dir.join("model.safetensors");
        let tensors = Tensor::read_safetensors(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut file: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        let _guard = tch::no_grad_guard();
        for (name, var) in vs.variables() {
            let src = file.remove(&name).ok_or_else(|| {
                format!(
                    "{} has no `{name}`: it is not this detector's checkpoint",
                    path.display()
                )
            })?;
            if src.size() != var.size() {
                return Err(format!(
                    "`{name}` is {:?} in {} but {:?} in the network",
                    src.size(),
                    path.display(),
                    var.size()
                ));
            }
            let mut var = var.shallow_clone();
            var.copy_(&src.to_device(device));
        }
        Ok(Trained { net, vs, config })
    }
}

/// The letterboxed images of `items` (with each source size and the images that cannot be
/// decoded), from the workspace's image cache, decoded now when not there yet.
pub(crate) fn letterboxed(
    job: &StageJob,
    fingerprint: &str,
    root: &std::path::Path,
    items: &[Item],
    size: usize,
    channels: usize,
    name: &str,
) -> Result<imagecache::Letterboxed, String> {
    let dir = job.workspace.join(".engine").join("images");
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let paths: Vec<PathBuf> = items.iter().map(|i| root.join(&i.path)).collect();
    let key = imagecache::key(&format!("{fingerprint}:letterbox"), &ids, size, channels);
    if imagecache::open(&dir, &key).is_none() {
        progress(0.0, &format!("decoding {} {name} images", paths.len()));
    }
    imagecache::letterbox_cache(&dir, &key, &paths, size, channels, job.cpus.max(1) as usize)
        .map_err(|e| format!("cannot write the image cache: {e}"))
}

/// The ground truth of `samples` in COCO terms (source pixels), image ids from 1.
pub(crate) fn ground_truth(catalog: &Catalog, samples: &[Sample]) -> GroundTruth {
    let mut gt = GroundTruth {
        images: (1..=samples.len() as i64).collect(),
        categories: catalog
            .box_classes
            .iter()
            .enumerate()
            .map(|(i, name)| Category {
                id: i as i64 + 1,
                name: name.clone(),
            })
            .collect(),
        boxes: Vec::new(),
    };
    for (i, s) in samples.iter().enumerate() {
        let (w, h) = (
            f64::from(s.letterbox.source.0),
            f64::from(s.letterbox.source.1),
        );
        for b in s.item.boxes.iter().flatten() {
            let bbox = [
                f64::from(b.cx - b.w / 2.0) * w,
                f64::from(b.cy - b.h / 2.0) * h,
                f64::from(b.w) * w,
                f64::from(b.h) * h,
            ];
            gt.boxes.push(GtBox {
                id: gt.boxes.len() as i64 + 1,
                image_id: i as i64 + 1,
                category_id: b.class as i64 + 1,
                bbox,
                area: bbox[2] * bbox[3],
                iscrowd: false,
            });
        }
    }
    gt
}

/// Detections in COCO terms: mapped from the square to the source image, clipped to it.
pub(crate) fn coco_detections(samples: &[Sample], dets: &[Vec<Detection>]) -> Vec<DetBox> {
    let mut out = Vec::new();
    for (i, (s, ds)) in samples.iter().zip(dets).enumerate() {
        let (w, h) = (
            f64::from(s.letterbox.source.0),
            f64::from(s.letterbox.source.1),
        );
        for d in ds {
            let (x0, y0) = s
                .letterbox
                .to_source(f64::from(d.bbox[0]), f64::from(d.bbox[1]));
            let (x1, y1) = s
                .letterbox
                .to_source(f64::from(d.bbox[2]), f64::from(d.bbox[3]));
            let (x0, y0, x1, y1) = (
                x0.clamp(0.0, w),
                y0.clamp(0.0, h),
                x1.clamp(0.0, w),
                y1.clamp(0.0, h),
            );
            if x1 - x0 <= 0.0 || y1 - y0 <= 0.0 {
                continue;
            }
            out.push(DetBox {
                image_id: i as i64 + 1,
                category_id: d.class as i64 + 1,
                bbox: [x0, y0, x1 - x0, y1 - y0],
                score: f64::from(d.score),
            });
        }
    }
    out
}

/// The images of an epoch: every image with boxes, then background images (boxed empty or
/// image-level negatives), all of them or `ratio` per image with boxes, shuffled.
fn epoch_indices(samples: &[Sample], ratio: Option<f64>, seed: u64, epoch: u64) -> Vec<i64> {
    let (pos, neg): (Vec<i64>, Vec<i64>) =
        (0..samples.len() as i64).partition(|&i| !samples[i as usize].boxes.is_empty());
    let mut chosen = pos.clone();
    match ratio {
        None => chosen.extend(&neg),
        Some(r) => {
            let want = ((r * pos.len() as f64).round() as usize).min(neg.len());
            let order = epoch_order(neg.len(), seed ^ 0x9E6_u64, epoch);
            chosen.extend(order.iter().take(want).map(|&j| neg[j as usize]));
        }
    }
    let order = epoch_order(chosen.len(), seed, epoch);
    order.iter().map(|&j| chosen[j as usize]).collect()
}

fn train(
    job: &StageJob,
    p: &DetectorParams,
    data: &Prepared,
    device: Device,
) -> Result<(), String> {
    let started = Instant::now();
    let seed = job.seed;
    tch::manual_seed(seed as i64);
    let k = data.catalog.box_classes.len() as i64;
    let images =
        DeviceImages::load(&data.train_images, device, 4 << 30).map_err(|e| e.to_string())?;
    let val_images =
        DeviceImages::load(&data.val_images, device, 1 << 30).map_err(|e| e.to_string())?;
    let mut vs = nn::VarStore::new(device);
    let net = Detector::new(&vs.root(), data.channels as i64, i64::from(p.width), k);
    let mut opt = nn::AdamW {
        wd: p.weight_decay,
        ..Default::default()
    }
    .build(&vs, p.lr)
    .map_err(|e| e.to_string())?;
    let size = i64::from(p.image_size);
    let grid = cells(size);
    let gt = ground_truth(&data.catalog, &data.val);
    let batch = p.batch_size as usize;
    let per_epoch = epoch_indices(&data.train, p.neg_pos_ratio, seed, 0).len();
    let steps_per_epoch = per_epoch.div_ceil(batch).max(1);
    let total_steps = (steps_per_epoch * p.epochs as usize).max(1);
    let warmup = (p.warmup_epochs * steps_per_epoch as f64).round() as usize;
    let out = &job.out_dir;
    let mut curve = String::new();
    // The best epoch: (its selection key, its number, its detections, its figures). The key
    // is the objective's mAP, then the other mAP, then the training loss negated: at 64 px
    // mAP@50 saturates at 1.0 within a few epochs while the boxes keep tightening.
    let mut best: Option<([f64; 3], u32, Vec<DetBox>, serde_json::Value)> = None;
    let by_strict = job
        .objective
        .as_ref()
        .is_some_and(|o| o.metric == engine_core::task::Metric::Map50_95);
    let mut since_best = 0u32;
    let mut step = 0usize;
    let mut stopped = "epochs";
    let mut last_report = Instant::now();
    for epoch in 0..p.epochs {
        let epoch_started = Instant::now();
        let order = epoch_indices(&data.train, p.neg_pos_ratio, seed, u64::from(epoch));
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for (b, chunk) in order.chunks(batch).enumerate() {
            opt.set_lr(opt_lr(step, warmup, total_steps, p.lr));
            let augs: Vec<BoxAugment> = chunk
                .iter()
                .enumerate()
                .map(|(j, _)| {
                    BoxAugment::draw(
                        p.augment,
                        seed ^ (u64::from(epoch) << 32),
                        (b * batch + j) as u64,
                    )
                })
                .collect();
            let targets: Vec<Vec<SquareBox>> = chunk
                .iter()
                .zip(&augs)
                .map(|(&i, a)| a.boxes(&data.train[i as usize].boxes, size as f32))
                .collect();
            let x = images.batch(chunk).map_err(|e| e.to_string())?;
            let x = to_input(&x, Some(&augs), data.channels);
            let o = net.forward(&x, true);
            let weights: Vec<f32> = chunk
                .iter()
                .map(|&i| data.train[i as usize].weight)
                .collect();
            let (total, _) = loss(&o, &targets, &weights, &grid, p, device);
            let l = total.double_value(&[]);
            if !l.is_finite() {
                return Err(format!(
                    "the loss became {l} in epoch {}; lower `lr`",
                    epoch + 1
                ));
            }
            opt.backward_step(&total);
            loss_sum += l * chunk.len() as f64;
            seen += chunk.len();
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
                        loss_sum / seen as f64,
                        rate * (f64::from(p.epochs) - done)
                    ),
                );
            }
        }
        let train_loss = loss_sum / seen.max(1) as f64;
        let dets = detect(
            &net,
            &val_images,
            data.channels,
            batch,
            p.nms_iou,
            p.max_detections as usize,
        )?;
        let coco = coco_detections(&data.val, &dets);
        let m = DetectionData::new(&gt, &coco, DetectionOptions::default())
            .map_err(|e| e.to_string())?
            .metrics();
        let map50 = if m.map50.is_finite() { m.map50 } else { 0.0 };
        let figures = json!({
            "map50": m.map50, "map50_95": m.map50_95, "precision": m.precision,
            "recall": m.recall, "f1": m.f1, "score_threshold": m.score_threshold,
        });
        let map50_95 = if m.map50_95.is_finite() {
            m.map50_95
        } else {
            0.0
        };
        let key = if by_strict {
            [map50_95, map50, -train_loss]
        } else {
            [map50, map50_95, -train_loss]
        };
        if best.as_ref().is_none_or(|(b, ..)| key > *b) {
            crate::nets::save(&vs, &[], &out.join("model.safetensors"))?;
            best = Some((key, epoch + 1, coco, figures.clone()));
            since_best = 0;
        } else if best.as_ref().is_some_and(|(b, ..)| b[0] > 0.0) {
            // Patience counts from the first epoch that found anything: a detector often
            // scores 0 for its first epochs while the head learns where to look.
            since_best += 1;
        }
        let line = json!({
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_metric": key[0],
            "val": figures,
            "lr": opt_lr(step, warmup, total_steps, p.lr),
            "seconds": epoch_started.elapsed().as_secs_f64(),
        });
        writeln!(curve, "{line}").ok();
        let elapsed = started.elapsed().as_secs_f64();
        progress(
            f64::from(epoch + 1) / f64::from(p.epochs),
            &format!(
                "epoch {}/{} loss {train_loss:.4} val map50 {map50:.4} recall {:.3} ETA {:.0}s",
                epoch + 1,
                p.epochs,
                m.recall,
                elapsed / f64::from(epoch + 1) * f64::from(p.epochs - epoch - 1)
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
    let (key, best_epoch, coco, figures) = best.ok_or("no epoch ran")?;
    let selected_by = if by_strict { "map50_95" } else { "map50" };
    let epochs_run = curve.lines().count();
    std::fs::write(out.join("curve.jsonl"), curve).map_err(|e| e.to_string())?;
    write_coco(out, &data.catalog, &data.val, &gt, &coco)?;
    let boxed = data.train.iter().filter(|s| !s.boxes.is_empty()).count();
    let metrics = json!({
        "metric": selected_by,
        "selected_by": "the best validation figure, ties to the other mAP, then to the lower training loss",
        "best": key[0],
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "stopped_by": stopped,
        "val": figures,
        "train_images": data.train.len(),
        "train_with_boxes": boxed,
        "train_background": data.train.len() - boxed,
        "unboxed_positives_left_out": data.unboxed_positives,
        "pseudo_labelled": data.pseudo_labelled,
        "val_images": data.val.len(),
        "val_boxes": gt.boxes.len(),
        "seconds": started.elapsed().as_secs_f64(),
        "runtime": runtime(device),
    });
    write_json(&out.join("metrics.json"), &metrics)?;
    let (mean, std) = normalisation(data.channels);
    let config = json!({
        "kind": "detector",
        "image_size": p.image_size,
        "channels": data.channels,
        "width": p.width,
        "strides": STRIDES,
        "box_classes": data.catalog.box_classes,
        "target": data.catalog.target,
        "dataset": p.dataset,
        "normalise": {"mean": mean, "std": std},
        "letterbox": true,
        "params": p,
        "seed": seed,
    });
    write_json(&out.join("config.json"), &config)?;
    println!(
        "best validation {selected_by} {:.4} at epoch {best_epoch} of {epochs_run} ({stopped})",
        key[0]
    );
    Ok(())
}

/// `ground_truth.json` and `detections.json` of `samples`, as `engine metrics --task
/// detection` reads them.
pub(crate) fn write_coco(
    out: &std::path::Path,
    catalog: &Catalog,
    samples: &[Sample],
    gt: &GroundTruth,
    dets: &[DetBox],
) -> Result<(), String> {
    let images: Vec<serde_json::Value> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "id": i + 1,
                "file_name": catalog.shown_item(&s.item),
                "width": s.letterbox.source.0,
                "height": s.letterbox.source.1,
            })
        })
        .collect();
    let annotations: Vec<serde_json::Value> = gt
        .boxes
        .iter()
        .map(|b| json!({"id": b.id, "image_id": b.image_id, "category_id": b.category_id, "bbox": b.bbox, "area": b.area, "iscrowd": 0}))
        .collect();
    let categories: Vec<serde_json::Value> = gt
        .categories
        .iter()
        .map(|c| json!({"id": c.id, "name": c.name}))
        .collect();
    write_json(
        &out.join("ground_truth.json"),
        &json!({"images": images, "annotations": annotations, "categories": categories}),
    )?;
    let dets: Vec<serde_json::Value> = dets
        .iter()
        .map(|d| json!({"image_id": d.image_id, "category_id": d.category_id, "bbox": d.bbox, "score": d.score}))
        .collect();
    write_json(
        &out.join("detections.json"),
        &serde_json::Value::Array(dets),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sq(x0: f32, y0: f32, x1: f32, y1: f32) -> SquareBox {
        SquareBox {
            class: 0,
            x0,
            y0,
            x1,
            y1,
        }
    }

    #[test]
    fn cells_cover_three_levels() {
        let c = cells(64);
        assert_eq!(c.len(), 64 + 16 + 4);
        assert_eq!(c[0], (4.0, 4.0, 8.0));
        assert_eq!(c[64], (8.0, 8.0, 16.0));
        assert_eq!(c[80], (16.0, 16.0, 32.0));
    }

    #[test]
    fn assignment_takes_central_cells_and_the_smallest_box() {
        let c = cells(64);
        // A 16-pixel box centred at (24, 24): the four finest cells around its centre, the
        // stride-16 cell at (24, 24), and the stride-32 cell at (16, 16)... which lies outside
        // the box (16 is its edge), so not that one.
        let big = sq(16.0, 16.0, 32.0, 32.0);
        let a = assign(&c, &[big], 2.5);
        let owned: Vec<usize> = a
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_some())
            .map(|(i, _)| i)
            .collect();
        let centres: Vec<(f32, f32, f32)> = owned.iter().map(|&i| c[i]).collect();
        assert!(centres.contains(&(20.0, 20.0, 8.0)) && centres.contains(&(28.0, 28.0, 8.0)));
        assert!(centres.contains(&(24.0, 24.0, 16.0)));
        assert_eq!(centres.len(), 5, "{centres:?}");
        // Overlapping boxes: the smaller wins the cells they share.
        let small = sq(18.0, 18.0, 26.0, 26.0);
        let a = assign(&c, &[big, small], 2.5);
        let at = c.iter().position(|&x| x == (20.0, 20.0, 8.0)).unwrap();
        assert_eq!(a[at], Some(1));
        // A box smaller than a cell still gets one: the finest cell holding its centre.
        let tiny = sq(41.0, 41.0, 42.0, 42.0);
        let a = assign(&c, &[tiny], 2.5);
        let owned: Vec<usize> = a
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(owned.len(), 1);
        assert_eq!(c[owned[0]], (44.0, 44.0, 8.0));
    }

    #[test]
    fn nms_keeps_the_best_of_each_overlapping_group_per_class() {
        let d = |class, score, x0: f32| Detection {
            class,
            score,
            bbox: [x0, 0.0, x0 + 10.0, 10.0],
        };
        let kept = nms(
            vec![
                d(0, 0.5, 1.0),
                d(0, 0.9, 0.0),
                d(1, 0.8, 0.0),
                d(0, 0.7, 30.0),
            ],
            0.5,
            10,
        );
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0].score, 0.9);
        assert!(kept.iter().any(|k| k.class == 1));
        assert!(
            !kept.iter().any(|k| k.score == 0.5),
            "suppressed by the 0.9 box"
        );
        assert_eq!(nms(vec![d(0, 0.9, 0.0), d(0, 0.7, 30.0)], 0.5, 1).len(), 1);
        assert!((iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn boxes_move_with_the_image() {
        let b = [sq(10.0, 20.0, 30.0, 40.0)];
        let none = BoxAugment {
            flip: false,
            zoom: 1.0,
            shift: (0.0, 0.0),
            brightness: 1.0,
            contrast: 1.0,
        };
        assert_eq!(none.boxes(&b, 64.0), b.to_vec());
        let flip = BoxAugment { flip: true, ..none };
        assert_eq!(flip.boxes(&b, 64.0), vec![sq(34.0, 20.0, 54.0, 40.0)]);
        let shifted = BoxAugment {
            shift: (0.25, 0.0),
            ..none
        };
        assert_eq!(shifted.boxes(&b, 64.0), vec![sq(26.0, 20.0, 46.0, 40.0)]);
        let zoom = BoxAugment { zoom: 2.0, ..none };
        // About the centre (32, 32): 10 -> -12 (clipped to 0), 30 -> 28; 20 -> 8, 40 -> 48.
        let z = zoom.boxes(&b, 64.0);
        assert_eq!(z, vec![sq(0.0, 8.0, 28.0, 48.0)]);
        // Pushed mostly out of the image: dropped.
        let out = BoxAugment {
            shift: (-0.45, 0.0),
            ..none
        };
        assert!(out.boxes(&b, 64.0).is_empty());
        // The image warp agrees with the box warp: a bright square lands where its box says.
        let mut img = vec![0u8; 64 * 64];
        for y in 20..40 {
            for x in 10..30 {
                img[y * 64 + x] = 255;
            }
        }
        let t = Tensor::from_slice(&img).view([1, 1, 64, 64]);
        for a in [flip, shifted] {
            let x = to_input(&t, Some(&[a]), 1) * 0.25 + 0.5;
            let moved = a.boxes(&b, 64.0)[0];
            let inside = x
                .narrow(2, moved.y0 as i64 + 1, 18)
                .narrow(3, moved.x0 as i64 + 1, 18)
                .mean(Kind::Float)
                .double_value(&[]);
            assert!(inside > 0.95, "{a:?}: {inside}");
        }
    }

    #[test]
    fn the_network_gives_outputs_for_every_cell_and_the_loss_falls_on_one_image() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Detector::new(&vs.root(), 1, 8, 2);
        let x = Tensor::zeros([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        let o = net.forward(&x, false);
        assert_eq!(o.objectness.size(), [2, 84]);
        assert_eq!(o.class.size(), [2, 84, 2]);
        assert_eq!(o.distances.size(), [2, 84, 4]);
        // A bright square and its box: a few steps of training lower the loss.
        let img = Tensor::zeros([1, 1, 64, 64], (Kind::Float, Device::Cpu));
        let _ = img.narrow(2, 16, 16).narrow(3, 24, 16).fill_(2.0);
        let p: DetectorParams = serde_json::from_value(json!({"dataset": "d"})).unwrap();
        let targets = vec![vec![SquareBox {
            class: 1,
            x0: 24.0,
            y0: 16.0,
            x1: 40.0,
            y1: 32.0,
        }]];
        let grid = cells(64);
        let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
        let step = || {
            loss(
                &net.forward(&img, true),
                &targets,
                &[1.0],
                &grid,
                &p,
                Device::Cpu,
            )
        };
        let first = step().0.double_value(&[]);
        for _ in 0..30 {
            let (l, n) = step();
            assert!(n > 0.0);
            opt.backward_step(&l);
        }
        let last = step().0.double_value(&[]);
        assert!(last < first * 0.5, "{first} -> {last}");
    }

    #[test]
    fn epochs_draw_every_boxed_image_and_the_ratio_of_background() {
        let s = |boxed: bool| Sample {
            item: Item {
                id: "x".into(),
                path: "x.png".into(),
                patient: None,
                lesion: None,
                class: usize::from(boxed),
                boxes: Some(Vec::new()),
                has_mask: false,
                attributes: Default::default(),
            },
            letterbox: Letterbox::of(8, 8, 8),
            weight: 1.0,
            boxes: if boxed {
                vec![sq(0.0, 0.0, 4.0, 4.0)]
            } else {
                Vec::new()
            },
        };
        let samples: Vec<Sample> = (0..10).map(|i| s(i < 3)).collect();
        assert_eq!(epoch_indices(&samples, None, 1, 0).len(), 10);
        let e = epoch_indices(&samples, Some(2.0), 1, 0);
        assert_eq!(e.len(), 9);
        assert!((0..3).all(|i| e.contains(&i)));
        let e2 = epoch_indices(&samples, Some(2.0), 1, 1);
        assert_ne!(e, e2, "another epoch, another draw");
    }
}
