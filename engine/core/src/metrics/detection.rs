//! Object detection metrics in the COCO manner: mAP@50 and mAP@50:95 computed as
//! pycocotools' `COCOeval` (bounding boxes, area "all", at most 100 detections per image
//! and category, 101-point interpolated precision), per-class AP, and precision, recall
//! and F1 at IoU 0.5 over all classes together.
//!
//! Matching follows `COCOeval.evaluateImg` step by step: per image and category,
//! detections are taken by descending score (stable, so file order breaks ties) and each
//! is matched to the unmatched ground-truth box of highest IoU at or above the threshold,
//! preferring boxes that are not ignored; crowd boxes (`iscrowd`) are ignored, may match
//! many detections, and use the detection's own area as the IoU denominator. Detections
//! matched to ignored boxes count neither way. A category takes part in the means when it
//! has at least one ground-truth box that is not ignored.
//! One deliberate difference: pycocotools treats a match to a ground-truth box whose `id`
//! is 0 as no match (it stores the id and tests it for truth); here ids do not matter.
//!
//! Precision, recall and F1 pool the detections of every class at IoU 0.5. The score
//! threshold (a detection counts when its score is `>=` it) is the one given, or else the
//! one that maximises F1 over the distinct detection scores (the highest such score on
//! ties). Bootstrap resamples draw whole images.

use std::collections::HashMap;

use super::bootstrap::{Bootstrap, Estimate, PairedTest, Units};
use super::error::MetricsError;

/// At most this many detections per image and category count, by descending score.
pub const MAX_DETS: usize = 100;
/// The area range "all" of pycocotools.
const AREA_ALL: (f64, f64) = (0.0, 1e10);
/// The IoU thresholds 0.5, 0.55, ..., 0.95.
const IOU_STEPS: usize = 10;
/// The recall thresholds 0, 0.01, ..., 1.
const RECALL_STEPS: usize = 101;

/// The IoU thresholds, computed as `numpy.linspace(.5, .95, 10)` computes them, so that
/// an IoU exactly at a threshold is judged the same way.
pub fn iou_thresholds() -> [f64; IOU_STEPS] {
    linspace(0.5, 0.95)
}

/// The recall thresholds, as `numpy.linspace(0, 1, 101)`.
fn recall_thresholds() -> [f64; RECALL_STEPS] {
    linspace(0.0, 1.0)
}

fn linspace<const N: usize>(start: f64, stop: f64) -> [f64; N] {
    let step = (stop - start) / (N - 1) as f64;
    let mut out = [0.0; N];
    for (k, v) in out.iter_mut().enumerate() {
        *v = k as f64 * step + start;
    }
    out[N - 1] = stop;
    out
}

/// A category of the ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct Category {
    /// The COCO category id.
    pub id: i64,
    /// Its name.
    pub name: String,
}

/// A ground-truth box.
#[derive(Clone, Debug, PartialEq)]
pub struct GtBox {
    /// The annotation id.
    pub id: i64,
    /// The image it is on.
    pub image_id: i64,
    /// Its category.
    pub category_id: i64,
    /// `[x, y, width, height]`.
    pub bbox: [f64; 4],
    /// The annotation's area (COCO's `area`; the box area when the file has none).
    pub area: f64,
    /// A crowd region: ignored, and matched by any number of detections.
    pub iscrowd: bool,
}

/// A detection.
#[derive(Clone, Debug, PartialEq)]
pub struct DetBox {
    /// The image it is on.
    pub image_id: i64,
    /// Its category.
    pub category_id: i64,
    /// `[x, y, width, height]`.
    pub bbox: [f64; 4],
    /// Its confidence.
    pub score: f64,
}

/// A COCO ground truth: images, categories and boxes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroundTruth {
    /// The image ids.
    pub images: Vec<i64>,
    /// The categories.
    pub categories: Vec<Category>,
    /// The boxes.
    pub boxes: Vec<GtBox>,
}

/// How to evaluate detections.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DetectionOptions {
    /// Score threshold for precision, recall and F1; `None` picks the F1-optimal one.
    pub score_threshold: Option<f64>,
}

/// Detection metrics of one sample; NaN marks an undefined value.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionMetrics {
    /// Mean AP at IoU 0.5 over the categories with ground truth.
    pub map50: f64,
    /// Mean AP over IoU 0.5 to 0.95 and the categories with ground truth.
    pub map50_95: f64,
    /// Precision at IoU 0.5 and the score threshold.
    pub precision: f64,
    /// Recall at IoU 0.5 and the score threshold.
    pub recall: f64,
    /// F1 at IoU 0.5 and the score threshold.
    pub f1: f64,
    /// The score threshold used for precision, recall and F1.
    pub score_threshold: f64,
    /// AP at IoU 0.5 of each category (NaN without ground truth).
    pub ap50: Vec<f64>,
    /// AP over IoU 0.5 to 0.95 of each category (NaN without ground truth).
    pub ap50_95: Vec<f64>,
}

impl DetectionMetrics {
    /// The names of [`DetectionMetrics::values`], given the category names.
    pub fn names(categories: &[String]) -> Vec<String> {
        let mut names: Vec<String> = [
            "map50",
            "map50_95",
            "precision",
            "recall",
            "f1",
            "score_threshold",
        ]
        .map(String::from)
        .to_vec();
        for prefix in ["ap50", "ap50_95"] {
            names.extend(categories.iter().map(|c| format!("{prefix}/{c}")));
        }
        names
    }

    /// The values: the six summary figures, then the per-category APs.
    pub fn values(&self) -> Vec<f64> {
        let mut v = vec![
            self.map50,
            self.map50_95,
            self.precision,
            self.recall,
            self.f1,
            self.score_threshold,
        ];
        v.extend(&self.ap50);
        v.extend(&self.ap50_95);
        v
    }
}

/// One detection after matching, in the order accumulation reads it.
#[derive(Clone, Copy, Debug)]
struct Matched {
    /// Index of its image (in ascending image id order).
    image: u32,
    score: f64,
    /// Bit `t`: matched at IoU threshold `t`.
    matched: u16,
    /// Bit `t`: ignored at IoU threshold `t`.
    ignored: u16,
}

/// One category's matched detections (sorted as pycocotools' `accumulate` sorts them) and
/// its count of ground-truth boxes that are not ignored, per image.
#[derive(Clone, Debug, Default)]
struct CategoryEval {
    dets: Vec<Matched>,
    gt_per_image: Vec<(u32, u64)>,
}

/// The ground-truth boxes and detections of one (category, image), each in file order.
type Cell<'a> = (Vec<&'a GtBox>, Vec<&'a DetBox>);

/// Detections matched to the ground truth once, ready to be scored on any resample of images.
#[derive(Clone, Debug)]
pub struct DetectionData {
    images: usize,
    categories: Vec<Category>,
    per_category: Vec<CategoryEval>,
    /// Detections of every category not ignored at IoU 0.5, by descending score:
    /// (image, score, true positive).
    pooled: Vec<(u32, f64, bool)>,
    /// Ground-truth boxes not ignored, of every category, per image.
    gt_per_image: Vec<u64>,
    options: DetectionOptions,
}

impl DetectionData {
    /// Matches the detections to the ground truth.
    pub fn new(
        gt: &GroundTruth,
        dets: &[DetBox],
        options: DetectionOptions,
    ) -> Result<DetectionData, MetricsError> {
        let mut image_ids = gt.images.clone();
        image_ids.sort_unstable();
        image_ids.dedup();
        let mut categories = gt.categories.clone();
        categories.sort_by_key(|c| c.id);
        categories.dedup_by_key(|c| c.id);
        let image_of: HashMap<i64, u32> = image_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
        let category_of: HashMap<i64, usize> = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        let locate = |what: &str, n: usize, image_id: i64, category_id: i64| {
            let image = *image_of.get(&image_id).ok_or_else(|| {
                MetricsError::Detection(format!("{what} {n} is on image {image_id}, which is not among the ground truth's images"))
            })?;
            let category = *category_of.get(&category_id).ok_or_else(|| {
                MetricsError::Detection(format!("{what} {n} has category {category_id}, which is not among the ground truth's categories"))
            })?;
            Ok::<_, MetricsError>((image, category))
        };
        for (n, b) in gt.boxes.iter().enumerate() {
            check_box("annotation", n, &b.bbox, b.area)?;
        }
        for (n, d) in dets.iter().enumerate() {
            check_box("detection", n, &d.bbox, 0.0)?;
            if !d.score.is_finite() {
                return Err(MetricsError::Detection(format!(
                    "detection {n} has score {}, not a finite number",
                    d.score
                )));
            }
        }

        // Boxes per (category, image), each list in file order.
        let mut cells: HashMap<(usize, u32), Cell<'_>> = HashMap::new();
        for (n, b) in gt.boxes.iter().enumerate() {
            let (image, category) = locate("annotation", n, b.image_id, b.category_id)?;
            cells.entry((category, image)).or_default().0.push(b);
        }
        for (n, d) in dets.iter().enumerate() {
            let (image, category) = locate("detection", n, d.image_id, d.category_id)?;
            cells.entry((category, image)).or_default().1.push(d);
        }
        let mut keys: Vec<(usize, u32)> = cells.keys().copied().collect();
        keys.sort_unstable();

        let thresholds = iou_thresholds();
        let mut per_category = vec![CategoryEval::default(); categories.len()];
        let mut gt_per_image = vec![0u64; image_ids.len()];
        for key in keys {
            let (gts, ds) = &cells[&key];
            let (category, image) = key;
            let (matched, not_ignored) = evaluate_image(gts, ds, image, &thresholds);
            let eval = &mut per_category[category];
            eval.dets.extend(matched);
            if not_ignored > 0 {
                eval.gt_per_image.push((image, not_ignored));
                gt_per_image[image as usize] += not_ignored;
            }
        }
        let mut pooled = Vec::new();
        for eval in &mut per_category {
            // Images were appended in ascending order, each by descending score: a stable
            // sort by score reproduces `accumulate`'s merge sort.
            eval.dets.sort_by(|a, b| b.score.total_cmp(&a.score));
            pooled.extend(
                eval.dets
                    .iter()
                    .filter(|d| d.ignored & 1 == 0)
                    .map(|d| (d.image, d.score, d.matched & 1 == 1)),
            );
        }
        pooled.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(DetectionData {
            images: image_ids.len(),
            categories,
            per_category,
            pooled,
            gt_per_image,
            options,
        })
    }

    /// The categories, in ascending id order (the order of the per-category values).
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The number of images (the bootstrap's units).
    pub fn images(&self) -> usize {
        self.images
    }

    /// The number of ground-truth boxes that are not ignored.
    pub fn ground_truth_boxes(&self) -> u64 {
        self.gt_per_image.iter().sum()
    }

    /// The metrics on the original sample.
    pub fn metrics(&self) -> DetectionMetrics {
        self.weighted(&vec![1; self.images])
    }

    /// The metrics when image `i` counts `w[i]` times.
    fn weighted(&self, w: &[u32]) -> DetectionMetrics {
        let recall_thr = recall_thresholds();
        let mut ap50 = Vec::with_capacity(self.categories.len());
        let mut ap50_95 = Vec::with_capacity(self.categories.len());
        let (mut sum50, mut sum, mut counted) = (0.0, 0.0, 0usize);
        let mut points: Vec<(f64, f64)> = Vec::new();
        for eval in &self.per_category {
            let npig: u64 = eval
                .gt_per_image
                .iter()
                .map(|&(i, n)| u64::from(w[i as usize]) * n)
                .sum();
            if npig == 0 {
                ap50.push(f64::NAN);
                ap50_95.push(f64::NAN);
                continue;
            }
            let mut per_t = [0.0; IOU_STEPS];
            for (t, ap) in per_t.iter_mut().enumerate() {
                *ap = average_precision(eval, w, t, npig, &recall_thr, &mut points);
            }
            ap50.push(per_t[0]);
            let mean = per_t.iter().sum::<f64>() / IOU_STEPS as f64;
            ap50_95.push(mean);
            sum50 += per_t[0];
            sum += mean;
            counted += 1;
        }
        let (map50, map50_95) = if counted == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (sum50 / counted as f64, sum / counted as f64)
        };
        let (precision, recall, f1, score_threshold) = self.operating_point(w);
        DetectionMetrics {
            map50,
            map50_95,
            precision,
            recall,
            f1,
            score_threshold,
            ap50,
            ap50_95,
        }
    }

    /// Precision, recall, F1 and the score threshold at IoU 0.5, all classes pooled.
    fn operating_point(&self, w: &[u32]) -> (f64, f64, f64, f64) {
        let gt: u64 = self
            .gt_per_image
            .iter()
            .zip(w)
            .map(|(&n, &wi)| n * u64::from(wi))
            .sum();
        let rates = |tp: u64, fp: u64| {
            let ratio = |a: u64, b: u64| {
                if b == 0 {
                    f64::NAN
                } else {
                    a as f64 / b as f64
                }
            };
            (
                ratio(tp, tp + fp),
                ratio(tp, gt),
                ratio(2 * tp, tp + fp + gt),
            )
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        if let Some(threshold) = self.options.score_threshold {
            for &(image, score, is_tp) in &self.pooled {
                if score < threshold {
                    break;
                }
                let wi = u64::from(w[image as usize]);
                if is_tp { tp += wi } else { fp += wi }
            }
            let (p, r, f) = rates(tp, fp);
            return (p, r, f, threshold);
        }
        // F1 = 2 tp / (tp + fp + gt), compared exactly as fractions; the first (highest
        // threshold) maximum wins.
        let mut best: Option<(u64, u64, f64)> = None;
        let better = |tp: u64, fp: u64, b: &(u64, u64, f64)| {
            u128::from(tp) * u128::from(b.0 + b.1 + gt) > u128::from(b.0) * u128::from(tp + fp + gt)
        };
        let mut j = 0;
        while j < self.pooled.len() {
            let score = self.pooled[j].1;
            let mut seen = false;
            while j < self.pooled.len() && self.pooled[j].1 == score {
                let (image, _, is_tp) = self.pooled[j];
                let wi = u64::from(w[image as usize]);
                seen |= wi > 0;
                if is_tp {
                    tp += wi
                } else {
                    fp += wi
                }
                j += 1;
            }
            if seen && best.as_ref().is_none_or(|b| better(tp, fp, b)) {
                best = Some((tp, fp, score));
            }
        }
        match best {
            Some((tp, fp, threshold)) => {
                let (p, r, f) = rates(tp, fp);
                (p, r, f, threshold)
            }
            None => {
                let (p, r, f) = rates(0, 0);
                (p, r, f, f64::NAN)
            }
        }
    }

    /// The paired bootstrap comparison of two detectors on the same images and ground
    /// truth (`self` is model A, `other` model B; both matched against the same ground
    /// truth), images resampled, in the order of [`DetectionMetrics::values`].
    pub fn paired(
        &self,
        other: &DetectionData,
        bootstrap: &Bootstrap,
    ) -> Result<Vec<PairedTest>, MetricsError> {
        if other.images != self.images
            || other.categories != self.categories
            || other.gt_per_image != self.gt_per_image
        {
            return Err(MetricsError::Detection(format!(
                "the two detectors were matched against different ground truth ({} and {} images, {} and {} boxes); paired tests need the same images and boxes",
                self.images,
                other.images,
                self.ground_truth_boxes(),
                other.ground_truth_boxes()
            )));
        }
        Ok(bootstrap.paired(
            &Units::Items(self.images),
            |w| self.weighted(w).values(),
            |w| other.weighted(w).values(),
        ))
    }

    /// Every metric with its bootstrap interval (images resampled), in the order of
    /// [`DetectionMetrics::values`].
    pub fn bootstrap(&self, bootstrap: &Bootstrap) -> Vec<Estimate> {
        bootstrap.estimate(&Units::Items(self.images), |w| self.weighted(w).values())
    }
}

/// Checks that a box has four finite numbers and no negative size.
fn check_box(what: &str, n: usize, bbox: &[f64; 4], area: f64) -> Result<(), MetricsError> {
    if bbox.iter().any(|v| !v.is_finite()) || !area.is_finite() {
        return Err(MetricsError::Detection(format!(
            "{what} {n} has a box or area that is not a finite number"
        )));
    }
    if bbox[2] < 0.0 || bbox[3] < 0.0 {
        return Err(MetricsError::Detection(format!(
            "{what} {n} has a negative width or height"
        )));
    }
    Ok(())
}

/// pycocotools' `bbIou`: intersection over union of `[x, y, w, h]` boxes, or over the
/// detection's area for a crowd box.
fn iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// pycocotools' `evaluateImg` for one image and category at every IoU threshold: the
/// kept detections by descending score with their match and ignore bits, and the number
/// of ground-truth boxes that are not ignored.
fn evaluate_image(
    gts: &[&GtBox],
    dets: &[&DetBox],
    image: u32,
    thresholds: &[f64; IOU_STEPS],
) -> (Vec<Matched>, u64) {
    let ignored_gt = |g: &GtBox| g.iscrowd || g.area < AREA_ALL.0 || g.area > AREA_ALL.1;
    let mut gts: Vec<&GtBox> = gts.to_vec();
    gts.sort_by_key(|g| ignored_gt(g));
    let gt_ignore: Vec<bool> = gts.iter().map(|g| ignored_gt(g)).collect();
    let mut dets: Vec<&DetBox> = dets.to_vec();
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    dets.truncate(MAX_DETS);
    let ious: Vec<Vec<f64>> = dets
        .iter()
        .map(|d| {
            gts.iter()
                .map(|g| iou(&d.bbox, &g.bbox, g.iscrowd))
                .collect()
        })
        .collect();
    let mut out: Vec<Matched> = dets
        .iter()
        .map(|d| Matched {
            image,
            score: d.score,
            matched: 0,
            ignored: 0,
        })
        .collect();
    for (t, &thr) in thresholds.iter().enumerate() {
        let mut gt_taken = vec![false; gts.len()];
        for (di, d) in dets.iter().enumerate() {
            let mut best_iou = thr.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for gi in 0..gts.len() {
                if gt_taken[gi] && !gts[gi].iscrowd {
                    continue;
                }
                // Matched to a regular box already, and only ignored boxes remain: stop.
                if let Some(mi) = m
                    && !gt_ignore[mi]
                    && gt_ignore[gi]
                {
                    break;
                }
                if ious[di][gi] < best_iou {
                    continue;
                }
                best_iou = ious[di][gi];
                m = Some(gi);
            }
            match m {
                Some(gi) => {
                    out[di].matched |= 1 << t;
                    if gt_ignore[gi] {
                        out[di].ignored |= 1 << t;
                    }
                    gt_taken[gi] = true;
                }
                None => {
                    let area = d.bbox[2] * d.bbox[3];
                    if area < AREA_ALL.0 || area > AREA_ALL.1 {
                        out[di].ignored |= 1 << t;
                    }
                }
            }
        }
    }
    let not_ignored = gt_ignore.iter().filter(|&&i| !i).count() as u64;
    (out, not_ignored)
}

/// pycocotools' `accumulate` for one category and IoU threshold: the mean over the 101
/// recall thresholds of the interpolated precision. An image that counts `w` times
/// contributes each of its detections as one step of weight `w`, which gives the same
/// curve as `w` copies of the image would.
fn average_precision(
    eval: &CategoryEval,
    w: &[u32],
    t: usize,
    npig: u64,
    recall_thr: &[f64; RECALL_STEPS],
    points: &mut Vec<(f64, f64)>,
) -> f64 {
    points.clear();
    let (mut tp, mut fp) = (0u64, 0u64);
    let npig = npig as f64;
    for d in &eval.dets {
        let wi = u64::from(w[d.image as usize]);
        // Ignored detections repeat the previous point; absent images add nothing.
        if d.ignored & (1 << t) != 0 || wi == 0 {
            continue;
        }
        if d.matched & (1 << t) != 0 {
            tp += wi;
        } else {
            fp += wi;
        }
        let (tpf, fpf) = (tp as f64, fp as f64);
        points.push((tpf / npig, tpf / (fpf + tpf + f64::EPSILON)));
    }
    // The precision envelope: the best precision at this recall or any higher one.
    for i in (1..points.len()).rev() {
        if points[i].1 > points[i - 1].1 {
            points[i - 1].1 = points[i].1;
        }
    }
    let mut sum = 0.0;
    let mut i = 0;
    for &r in recall_thr {
        while i < points.len() && points[i].0 < r {
            i += 1;
        }
        if i == points.len() {
            break;
        }
        sum += points[i].1;
    }
    sum / RECALL_STEPS as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt_box(id: i64, image_id: i64, bbox: [f64; 4]) -> GtBox {
        GtBox {
            id,
            image_id,
            category_id: 1,
            bbox,
            area: bbox[2] * bbox[3],
            iscrowd: false,
        }
    }

    fn det(image_id: i64, bbox: [f64; 4], score: f64) -> DetBox {
        DetBox {
            image_id,
            category_id: 1,
            bbox,
            score,
        }
    }

    fn truth(boxes: Vec<GtBox>) -> GroundTruth {
        GroundTruth {
            images: vec![1, 2],
            categories: vec![Category {
                id: 1,
                name: "a".into(),
            }],
            boxes,
        }
    }

    #[test]
    fn thresholds_match_numpy_linspace() {
        let t = iou_thresholds();
        assert_eq!(t[0], 0.5);
        assert_eq!(t[2], 0.6);
        assert_eq!(t[8], 0.8999999999999999);
        assert_eq!(t[9], 0.95);
        assert_eq!(recall_thresholds()[3], 0.03);
    }

    #[test]
    fn iou_of_boxes_and_crowds() {
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &b, false), 50.0 / 150.0);
        assert_eq!(iou(&a, &b, true), 0.5);
        assert_eq!(iou(&a, &[20.0, 20.0, 1.0, 1.0], false), 0.0);
    }

    #[test]
    fn perfect_detections_score_one() {
        let gt = truth(vec![
            gt_box(1, 1, [0.0, 0.0, 10.0, 10.0]),
            gt_box(2, 2, [5.0, 5.0, 4.0, 4.0]),
        ]);
        let dets = vec![
            det(1, [0.0, 0.0, 10.0, 10.0], 0.9),
            det(2, [5.0, 5.0, 4.0, 4.0], 0.8),
        ];
        let m = DetectionData::new(&gt, &dets, DetectionOptions::default())
            .unwrap()
            .metrics();
        assert_eq!((m.map50, m.map50_95), (1.0, 1.0));
        assert_eq!(
            (m.precision, m.recall, m.f1, m.score_threshold),
            (1.0, 1.0, 1.0, 0.8)
        );
    }

    #[test]
    fn a_missed_box_and_a_false_alarm() {
        // Two boxes; one found, one false alarm scored above it.
        let gt = truth(vec![
            gt_box(1, 1, [0.0, 0.0, 10.0, 10.0]),
            gt_box(2, 2, [5.0, 5.0, 4.0, 4.0]),
        ]);
        let dets = vec![
            det(2, [50.0, 50.0, 4.0, 4.0], 0.9),
            det(1, [0.0, 0.0, 10.0, 10.0], 0.8),
        ];
        let m = DetectionData::new(&gt, &dets, DetectionOptions::default())
            .unwrap()
            .metrics();
        // Points (0, 0), (0.5, 0.5); envelope 0.5 up to recall 0.5: 51 of 101 thresholds.
        assert!((m.map50 - 0.5 * 51.0 / 101.0).abs() < 1e-12, "{m:?}");
        assert_eq!(m.recall, 0.5);
        assert_eq!(m.score_threshold, 0.8);
        assert_eq!(m.f1, 0.5);
        let fixed = DetectionData::new(
            &gt,
            &dets,
            DetectionOptions {
                score_threshold: Some(0.85),
            },
        )
        .unwrap()
        .metrics();
        assert_eq!((fixed.precision, fixed.recall, fixed.f1), (0.0, 0.0, 0.0));
    }

    #[test]
    fn weighted_images_equal_copies() {
        let gt = truth(vec![
            gt_box(1, 1, [0.0, 0.0, 10.0, 10.0]),
            gt_box(2, 2, [5.0, 5.0, 4.0, 4.0]),
        ]);
        let dets = vec![
            det(2, [50.0, 50.0, 4.0, 4.0], 0.9),
            det(1, [0.0, 0.0, 10.0, 10.0], 0.8),
        ];
        let data = DetectionData::new(&gt, &dets, DetectionOptions::default()).unwrap();
        let weighted = data.weighted(&[2, 1]);
        // Image 1 twice: image 3 is its copy.
        let mut gt3 = gt.clone();
        gt3.images.push(3);
        gt3.boxes.push(gt_box(3, 3, [0.0, 0.0, 10.0, 10.0]));
        let mut dets3 = dets.clone();
        dets3.push(det(3, [0.0, 0.0, 10.0, 10.0], 0.8));
        let copies = DetectionData::new(&gt3, &dets3, DetectionOptions::default())
            .unwrap()
            .metrics();
        assert_eq!(weighted, copies);
    }

    #[test]
    fn paired_comparisons_share_the_resamples_and_need_the_same_truth() {
        // Twenty images, one box each; model A finds every box, model B half of them.
        let boxes: Vec<GtBox> = (1..=20)
            .map(|i| gt_box(i, i, [10.0, 10.0, 20.0, 20.0]))
            .collect();
        let mut gt = truth(boxes);
        gt.images = (1..=20).collect();
        let a: Vec<DetBox> = (1..=20)
            .map(|i| det(i, [10.0, 10.0, 20.0, 20.0], 0.9))
            .collect();
        let b: Vec<DetBox> = (1..=20)
            .map(|i| {
                let x = if i % 2 == 0 { 10.0 } else { 60.0 };
                det(i, [x, 10.0, 20.0, 20.0], 0.9)
            })
            .collect();
        let da = DetectionData::new(&gt, &a, DetectionOptions::default()).unwrap();
        let db = DetectionData::new(&gt, &b, DetectionOptions::default()).unwrap();
        let boot = Bootstrap {
            resamples: 400,
            seed: 3,
            ..Bootstrap::default()
        };
        let tests = da.paired(&db, &boot).unwrap();
        let map50 = &tests[0];
        assert_eq!(map50.a, da.metrics().map50);
        assert_eq!(map50.b, db.metrics().map50);
        assert!(map50.diff > 0.4, "{map50:?}");
        assert!(map50.p_value.unwrap() < 0.01, "{map50:?}");
        let (lo, hi) = map50.ci.unwrap();
        assert!(lo > 0.0 && hi <= 1.0, "{map50:?}");
        // A model against itself: no difference on any resample.
        let same = da.paired(&da, &boot).unwrap();
        assert_eq!(same[0].diff, 0.0);
        assert_eq!(same[0].p_value, Some(1.0));
        // Other ground truth is refused.
        let mut fewer = gt.clone();
        fewer.boxes.pop();
        let dc = DetectionData::new(&fewer, &a, DetectionOptions::default()).unwrap();
        let e = da.paired(&dc, &boot).unwrap_err().to_string();
        assert!(e.contains("different ground truth"), "{e}");
    }

    #[test]
    fn unknown_images_and_categories_are_refused() {
        let gt = truth(vec![gt_box(1, 1, [0.0, 0.0, 10.0, 10.0])]);
        let bad_image = vec![det(9, [0.0, 0.0, 1.0, 1.0], 0.5)];
        assert!(DetectionData::new(&gt, &bad_image, DetectionOptions::default()).is_err());
        let mut bad_cat = det(1, [0.0, 0.0, 1.0, 1.0], 0.5);
        bad_cat.category_id = 4;
        assert!(DetectionData::new(&gt, &[bad_cat], DetectionOptions::default()).is_err());
    }
}
