//! Binary classification metrics: ROC AUC, the Youden operating point (sensitivity,
//! specificity, F1, accuracy and its threshold) and the operating points at a given
//! specificity or sensitivity, on the original sample or a weighted bootstrap resample.
//!
//! Conventions, as in scikit-learn's `roc_curve`:
//! - The candidate thresholds are the distinct scores; a case is predicted positive when
//!   its score is `>= threshold`. Tied scores therefore always fall on the same side.
//! - The AUC is the trapezoidal area under the ROC curve through every distinct threshold,
//!   which equals the Mann-Whitney statistic with ties counted one half. It is computed
//!   from integer counts, so it is the exact rational value rounded once (scikit-learn's
//!   `roc_auc_score` agrees to about 1e-15).
//! - The Youden threshold maximises `sensitivity + specificity - 1` over the distinct
//!   scores (J is compared exactly, in integers); among equal maxima the highest threshold
//!   wins, as `argmax` over `roc_curve`'s thresholds (which run from high to low) picks.
//! - Sensitivity at specificity X is the highest sensitivity among the thresholds whose
//!   specificity is at least X (the "predict nothing positive" point, sensitivity 0, counts);
//!   specificity at sensitivity Y is the highest specificity among thresholds whose
//!   sensitivity is at least Y.

use super::bootstrap::{Bootstrap, Estimate, Units};
use super::error::MetricsError;

/// The binary operating points asked for besides Youden's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BinaryOptions {
    /// Report the sensitivity at this specificity (0 to 1).
    pub at_specificity: f64,
    /// Report the specificity at this sensitivity (0 to 1).
    pub at_sensitivity: f64,
}

impl Default for BinaryOptions {
    fn default() -> BinaryOptions {
        BinaryOptions {
            at_specificity: 0.8,
            at_sensitivity: 0.9,
        }
    }
}

/// Binary metrics of one sample. A value is NaN when it is undefined (one class only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BinaryMetrics {
    /// Area under the ROC curve.
    pub auc: f64,
    /// The Youden threshold: predicted positive when the score is `>=` it.
    pub threshold: f64,
    /// Sensitivity (recall, true positive rate) at the Youden threshold.
    pub sensitivity: f64,
    /// Specificity (true negative rate) at the Youden threshold.
    pub specificity: f64,
    /// F1 score at the Youden threshold.
    pub f1: f64,
    /// Accuracy at the Youden threshold.
    pub accuracy: f64,
    /// Sensitivity at the requested specificity.
    pub sensitivity_at_specificity: f64,
    /// Specificity at the requested sensitivity.
    pub specificity_at_sensitivity: f64,
}

impl BinaryMetrics {
    /// Names of the values, in the order of [`BinaryMetrics::values`].
    pub const NAMES: [&'static str; 8] = [
        "auc",
        "sensitivity",
        "specificity",
        "f1",
        "accuracy",
        "threshold",
        "sensitivity_at_specificity",
        "specificity_at_sensitivity",
    ];

    /// The values in the order of [`BinaryMetrics::NAMES`].
    pub fn values(&self) -> Vec<f64> {
        vec![
            self.auc,
            self.sensitivity,
            self.specificity,
            self.f1,
            self.accuracy,
            self.threshold,
            self.sensitivity_at_specificity,
            self.specificity_at_sensitivity,
        ]
    }

    const UNDEFINED: BinaryMetrics = BinaryMetrics {
        auc: f64::NAN,
        threshold: f64::NAN,
        sensitivity: f64::NAN,
        specificity: f64::NAN,
        f1: f64::NAN,
        accuracy: f64::NAN,
        sensitivity_at_specificity: f64::NAN,
        specificity_at_sensitivity: f64::NAN,
    };
}

/// Items sorted once by descending score, the last item of each run of tied scores marked,
/// so that every ROC quantity is one O(n) pass over any weighting of the items.
#[derive(Clone, Debug)]
pub(crate) struct Ranked {
    /// `order[j]` is the item at sorted position `j`.
    pub order: Vec<usize>,
    /// The scores in descending order.
    pub scores: Vec<f64>,
    /// Per sorted position: [`POSITIVE`] and [`RUN_END`] bits, for the AUC's linear pass.
    code: Vec<u8>,
}

impl Ranked {
    /// Sorts finite scores (checked by the caller) in descending order.
    pub fn new(positive: &[bool], scores: &[f64]) -> Ranked {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let sorted: Vec<f64> = order.iter().map(|&i| scores[i]).collect();
        let mut code: Vec<u8> = order
            .iter()
            .map(|&i| u8::from(positive[i]) * POSITIVE)
            .collect();
        // `!=` rather than the sort's total order, so that -0.0 and 0.0 tie.
        for j in 0..sorted.len() {
            if j + 1 == sorted.len() || sorted[j + 1] != sorted[j] {
                code[j] |= RUN_END;
            }
        }
        Ranked {
            code,
            scores: sorted,
            order,
        }
    }

    /// The AUC under the weights `w(sorted position)`; NaN when a class has no weight.
    #[inline]
    pub fn auc(&self, w: impl Fn(usize) -> u32) -> f64 {
        // One linear pass; the counts of the current run of tied scores are folded into
        // the area at the run's last item. Branch-free per item but for the run end, which
        // is predictable (every item ends a run when scores are distinct).
        let (mut tp, mut fp, mut gtp, mut gfp, mut twice_u) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for (j, &code) in self.code.iter().enumerate() {
            let wj = u64::from(w(j));
            let pos = u64::from(code & POSITIVE);
            gtp += wj * pos;
            gfp += wj - wj * pos;
            if code & RUN_END != 0 {
                // Trapezoid between (fp, tp) and (fp + gfp, tp + gtp), doubled to stay in
                // integers (below 2^64 for fewer than 2^32 items).
                twice_u += gfp * (2 * tp + gtp);
                tp += gtp;
                fp += gfp;
                gtp = 0;
                gfp = 0;
            }
        }
        if tp == 0 || fp == 0 {
            return f64::NAN;
        }
        twice_u as f64 / (2.0 * tp as f64 * fp as f64)
    }
}

/// Bit of [`Ranked::code`]: the item is positive.
const POSITIVE: u8 = 1;
/// Bit of [`Ranked::code`]: the item is the last of its run of tied scores.
const RUN_END: u8 = 2;

/// Binary predictions prepared for evaluation (sorted once).
#[derive(Clone, Debug)]
pub struct BinaryData {
    ranked: Ranked,
}

impl BinaryData {
    /// Checks and sorts the predictions: `positive[i]` is the label of item `i` and
    /// `scores[i]` its score (any finite number; higher means more likely positive).
    pub fn new(positive: &[bool], scores: &[f64]) -> Result<BinaryData, MetricsError> {
        if scores.len() != positive.len() {
            return Err(MetricsError::Length {
                what: "scores",
                got: scores.len(),
                want: positive.len(),
            });
        }
        if scores.is_empty() {
            return Err(MetricsError::Empty);
        }
        if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            return Err(MetricsError::NotFinite { index, value });
        }
        Ok(BinaryData {
            ranked: Ranked::new(positive, scores),
        })
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.ranked.order.len()
    }

    /// Whether there are no items (never true for a value built by [`BinaryData::new`]).
    pub fn is_empty(&self) -> bool {
        self.ranked.order.is_empty()
    }

    /// The metrics on the original sample.
    pub fn metrics(&self, opts: &BinaryOptions) -> BinaryMetrics {
        self.weighted(&vec![1; self.len()], opts)
    }

    /// The metrics when the item at sorted position `j` counts `w[j]` times.
    fn weighted(&self, w: &[u32], opts: &BinaryOptions) -> BinaryMetrics {
        let r = &self.ranked;
        let (mut pos, mut all) = (0u64, 0u64);
        for (&wj, &code) in w.iter().zip(&r.code) {
            pos += u64::from(wj) * u64::from(code & POSITIVE);
            all += u64::from(wj);
        }
        let neg = all - pos;
        if pos == 0 || neg == 0 {
            return BinaryMetrics::UNDEFINED;
        }
        let (pos_f, neg_f) = (pos as f64, neg as f64);
        // The operating-point targets as counts: at most `max_fp` false positives keeps the
        // specificity at least X, at least `min_tp` true positives the sensitivity at least
        // Y. A hair of slack lets a rate equal to its target up to rounding (0.8 of 10
        // negatives) qualify.
        let max_fp = (neg_f - opts.at_specificity * neg_f * (1.0 - 1e-12)).floor();
        let min_tp = (opts.at_sensitivity * pos_f * (1.0 - 1e-12)).ceil();
        let (max_fp, min_tp) = (max_fp.max(0.0) as u64, min_tp.max(0.0) as u64);
        // The "predict nothing positive" point: specificity 1, sensitivity 0.
        let mut sens_at_spec = 0u64;
        let mut spec_at_sens: Option<u64> = (min_tp == 0).then_some(0);

        let (mut tp, mut fp, mut gtp, mut gfp, mut twice_u) = (0u64, 0u64, 0u64, 0u64, 0u64);
        // Youden: the best J as the exact numerator tp * neg - fp * pos, with its counts and
        // threshold; the first (highest-threshold) maximum is kept.
        let mut best: Option<(i128, u64, u64, usize)> = None;
        for (j, (&wj, &code)) in w.iter().zip(&r.code).enumerate() {
            let wj = u64::from(wj);
            let p = u64::from(code & POSITIVE);
            gtp += wj * p;
            gfp += wj - wj * p;
            if code & RUN_END == 0 || gtp + gfp == 0 {
                // Inside a run of tied scores, or a run nobody in the resample has (not a
                // threshold of the resample's ROC curve).
                continue;
            }
            twice_u += gfp * (2 * tp + gtp);
            tp += gtp;
            fp += gfp;
            gtp = 0;
            gfp = 0;
            let jn = i128::from(tp) * i128::from(neg) - i128::from(fp) * i128::from(pos);
            if best.is_none_or(|(b, ..)| jn > b) {
                best = Some((jn, tp, fp, j));
            }
            if fp <= max_fp {
                sens_at_spec = tp;
            }
            if spec_at_sens.is_none() && tp >= min_tp {
                spec_at_sens = Some(fp);
            }
        }
        let Some((_, ytp, yfp, at)) = best else {
            return BinaryMetrics::UNDEFINED;
        };
        let (yfn, ytn) = (pos - ytp, neg - yfp);
        BinaryMetrics {
            auc: twice_u as f64 / (2.0 * pos_f * neg_f),
            threshold: r.scores[at],
            sensitivity: ytp as f64 / pos_f,
            specificity: ytn as f64 / neg_f,
            f1: 2.0 * ytp as f64 / (2 * ytp + yfp + yfn) as f64,
            accuracy: (ytp + ytn) as f64 / (pos + neg) as f64,
            sensitivity_at_specificity: sens_at_spec as f64 / pos_f,
            specificity_at_sensitivity: spec_at_sens
                .map_or(f64::NAN, |fp| (neg - fp) as f64 / neg_f),
        }
    }

    /// Every metric with its bootstrap interval, in the order of [`BinaryMetrics::NAMES`].
    /// `units` describes the items in the caller's order (e.g. clusters by patient).
    pub fn bootstrap(
        &self,
        opts: &BinaryOptions,
        units: &Units,
        bootstrap: &Bootstrap,
    ) -> Result<Vec<Estimate>, MetricsError> {
        let units = self.sorted_units(units)?;
        Ok(bootstrap.estimate(&units, |w| self.weighted(w, opts).values()))
    }

    /// The AUC alone with its bootstrap interval (the fast path the benchmark measures).
    pub fn bootstrap_auc(
        &self,
        units: &Units,
        bootstrap: &Bootstrap,
    ) -> Result<Estimate, MetricsError> {
        let units = self.sorted_units(units)?;
        let mut est = bootstrap.estimate(&units, |w| vec![self.ranked.auc(|j| w[j])]);
        est.pop().ok_or(MetricsError::Empty)
    }

    /// The AUC on the original sample.
    pub fn auc(&self) -> f64 {
        self.ranked.auc(|_| 1)
    }

    /// The caller's units re-expressed in sorted order, so weights arrive in the order the
    /// walks read them.
    fn sorted_units(&self, units: &Units) -> Result<Units, MetricsError> {
        if units.items() != self.len() {
            return Err(MetricsError::Length {
                what: "resampling units",
                got: units.items(),
                want: self.len(),
            });
        }
        Ok(units.permuted(&self.ranked.order))
    }

    /// The paired bootstrap comparison of two models' metrics on the same cases: `self` is
    /// model A, `other` model B, and their items must be the same cases in the same order.
    pub fn paired(
        &self,
        other: &BinaryData,
        opts: &BinaryOptions,
        units: &Units,
        bootstrap: &Bootstrap,
    ) -> Result<Vec<super::bootstrap::PairedTest>, MetricsError> {
        if other.len() != self.len() {
            return Err(MetricsError::Length {
                what: "model B's predictions",
                got: other.len(),
                want: self.len(),
            });
        }
        if units.items() != self.len() {
            return Err(MetricsError::Length {
                what: "resampling units",
                got: units.items(),
                want: self.len(),
            });
        }
        // Weights come in the caller's item order; each model reads them through its own
        // sorted order.
        let by_item = |data: &BinaryData, w: &[u32]| {
            let sorted: Vec<u32> = data.ranked.order.iter().map(|&i| w[i]).collect();
            data.weighted(&sorted, opts).values()
        };
        Ok(bootstrap.paired(units, |w| by_item(self, w), |w| by_item(other, w)))
    }
}

/// How a decision threshold is chosen (on validation; it is then used unchanged).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OperatingRule {
    /// Youden's J: the threshold maximising sensitivity + specificity - 1.
    Youden,
    /// The highest threshold whose sensitivity is at least this: the best specificity among
    /// the thresholds that meet the sensitivity.
    MinSensitivity(f64),
    /// The lowest threshold whose specificity is at least this: the best sensitivity among
    /// the thresholds that meet the specificity.
    MinSpecificity(f64),
}

impl OperatingRule {
    /// The rule in words, e.g. "the highest specificity with sensitivity of at least 90%".
    pub fn describe(&self) -> String {
        match self {
            OperatingRule::Youden => {
                "Youden's point (the largest sensitivity + specificity)".to_owned()
            }
            OperatingRule::MinSensitivity(x) => format!(
                "the highest specificity with a sensitivity of at least {}",
                percent(*x)
            ),
            OperatingRule::MinSpecificity(x) => format!(
                "the highest sensitivity with a specificity of at least {}",
                percent(*x)
            ),
        }
    }
}

/// A fraction as a percentage in words: 0.9 -> "90%", 0.875 -> "87.5%".
pub fn percent(x: f64) -> String {
    let p = 100.0 * x;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{}%", (p * 10.0).round() / 10.0)
    }
}

/// A threshold chosen by an [`OperatingRule`], with what it gave on the data it was chosen on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperatingPoint {
    /// Predicted positive when the score is `>=` this.
    pub threshold: f64,
    /// Sensitivity on the data it was chosen on.
    pub sensitivity: f64,
    /// Specificity on the data it was chosen on.
    pub specificity: f64,
}

impl BinaryData {
    /// The threshold `rule` picks on these predictions; `None` with one class only.
    /// Every target is reachable: the lowest score calls everything positive (sensitivity
    /// 1), and when no score keeps the specificity, the threshold lies just above the
    /// highest score and calls nothing positive (specificity 1).
    pub fn operating_point(&self, rule: OperatingRule) -> Option<OperatingPoint> {
        let r = &self.ranked;
        let pos = r.code.iter().filter(|&&c| c & POSITIVE != 0).count() as u64;
        let neg = r.code.len() as u64 - pos;
        if pos == 0 || neg == 0 {
            return None;
        }
        let (pos_f, neg_f) = (pos as f64, neg as f64);
        let point = |tp: u64, fp: u64, threshold: f64| OperatingPoint {
            threshold,
            sensitivity: tp as f64 / pos_f,
            specificity: (neg - fp) as f64 / neg_f,
        };
        if let OperatingRule::Youden = rule {
            let m = self.metrics(&BinaryOptions::default());
            return Some(OperatingPoint {
                threshold: m.threshold,
                sensitivity: m.sensitivity,
                specificity: m.specificity,
            });
        }
        // As in `weighted`: the targets as counts, with a hair of slack for rounding.
        let min_tp = match rule {
            OperatingRule::MinSensitivity(x) => (x * pos_f * (1.0 - 1e-12)).ceil().max(0.0) as u64,
            _ => 0,
        };
        let max_fp = match rule {
            OperatingRule::MinSpecificity(x) => {
                (neg_f - x * neg_f * (1.0 - 1e-12)).floor().max(0.0) as u64
            }
            _ => u64::MAX,
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut best: Option<OperatingPoint> = None;
        for (j, &code) in r.code.iter().enumerate() {
            if code & POSITIVE != 0 {
                tp += 1;
            } else {
                fp += 1;
            }
            if code & RUN_END == 0 {
                continue;
            }
            match rule {
                OperatingRule::MinSensitivity(_) if tp >= min_tp => {
                    return Some(point(tp, fp, r.scores[j]));
                }
                OperatingRule::MinSpecificity(_) if fp <= max_fp => {
                    best = Some(point(tp, fp, r.scores[j]));
                }
                _ => {}
            }
        }
        best.or_else(|| {
            // Nothing meets the specificity: call nothing positive.
            let top = r.scores.first().copied()?;
            Some(point(0, 0, top.next_up()))
        })
    }
}

/// Counts of a binary decision at a fixed threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Positives called positive.
    pub tp: u64,
    /// Negatives called positive.
    pub fp: u64,
    /// Negatives called negative.
    pub tn: u64,
    /// Positives called negative.
    pub fn_: u64,
}

impl Confusion {
    /// The counts of `score >= threshold` against the labels, each case counted `w[i]` times.
    pub fn at(positive: &[bool], scores: &[f64], threshold: f64, w: &[u32]) -> Confusion {
        let mut c = Confusion::default();
        for ((&p, &s), &wi) in positive.iter().zip(scores).zip(w) {
            let wi = u64::from(wi);
            match (p, s >= threshold) {
                (true, true) => c.tp += wi,
                (true, false) => c.fn_ += wi,
                (false, true) => c.fp += wi,
                (false, false) => c.tn += wi,
            }
        }
        c
    }

    /// Sensitivity, specificity, PPV, NPV, F1 and accuracy, NaN where undefined.
    pub fn rates(&self) -> [f64; 6] {
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        let all = self.tp + self.fp + self.tn + self.fn_;
        [
            ratio(self.tp, self.tp + self.fn_),
            ratio(self.tn, self.tn + self.fp),
            ratio(self.tp, self.tp + self.fp),
            ratio(self.tn, self.tn + self.fn_),
            ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_),
            ratio(self.tp + self.tn, all),
        ]
    }

    /// Names of [`Confusion::rates`], in order.
    pub const RATES: [&'static str; 6] =
        ["sensitivity", "specificity", "ppv", "npv", "f1", "accuracy"];
}

/// ROC AUC of scores against binary labels, as scikit-learn's `roc_auc_score`.
pub fn roc_auc(positive: &[bool], scores: &[f64]) -> Result<f64, MetricsError> {
    let auc = BinaryData::new(positive, scores)?.auc();
    if auc.is_nan() {
        return Err(MetricsError::SingleClass("labels".into()));
    }
    Ok(auc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(labels: &[u8], scores: &[f64]) -> BinaryData {
        let pos: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        BinaryData::new(&pos, scores).unwrap()
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // Positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4) (0.4>0.1).
        let d = data(&[1, 1, 0, 0], &[0.8, 0.4, 0.4, 0.1]);
        assert_eq!(d.auc(), 3.5 / 4.0);
        assert_eq!(data(&[1, 0], &[0.5, 0.5]).auc(), 0.5);
        assert_eq!(data(&[0, 1], &[0.2, 0.9]).auc(), 1.0);
        assert_eq!(data(&[1, 0], &[0.2, 0.9]).auc(), 0.0);
    }

    #[test]
    fn auc_is_undefined_with_one_class() {
        assert!(data(&[1, 1], &[0.2, 0.3]).auc().is_nan());
        assert!(matches!(
            roc_auc(&[false, false], &[0.1, 0.2]),
            Err(MetricsError::SingleClass(_))
        ));
    }

    #[test]
    fn youden_threshold_and_its_confusion_matrix() {
        // Sorted: 0.9 P, 0.8 P, 0.7 N, 0.6 P, 0.3 N, 0.2 N.
        let d = data(&[1, 1, 0, 1, 0, 0], &[0.9, 0.8, 0.7, 0.6, 0.3, 0.2]);
        let m = d.metrics(&BinaryOptions::default());
        // J at 0.8: 2/3 - 0 = 0.667; at 0.6: 1 - 1/3 = 0.667: a tie, the higher threshold wins.
        assert_eq!(m.threshold, 0.8);
        assert_eq!(m.sensitivity, 2.0 / 3.0);
        assert_eq!(m.specificity, 1.0);
        assert_eq!(m.f1, 0.8);
        assert_eq!(m.accuracy, 5.0 / 6.0);
        // Specificity >= 0.8 allows fp = 0 only: best sensitivity 2/3.
        assert_eq!(m.sensitivity_at_specificity, 2.0 / 3.0);
        // Sensitivity >= 0.9 needs all three positives (threshold 0.6): specificity 2/3.
        assert_eq!(m.specificity_at_sensitivity, 2.0 / 3.0);
    }

    #[test]
    fn operating_point_targets_are_met_exactly_at_the_boundary() {
        // Ten negatives: specificity 0.8 is exactly two false positives.
        let mut labels = vec![0u8; 10];
        labels.extend([1, 1]);
        let mut scores: Vec<f64> = (0..10).map(|i| f64::from(i) / 10.0).collect();
        scores.extend([0.75, 0.05]);
        let m = data(&labels, &scores).metrics(&BinaryOptions::default());
        // Thresholds >= 0.75 keep fp <= 2 (0.8, 0.9): one positive of two found.
        assert_eq!(m.sensitivity_at_specificity, 0.5);
    }

    #[test]
    fn weighted_walk_equals_duplicating_items() {
        let labels = [1u8, 0, 1, 0, 0, 1, 1, 0];
        let scores = [0.9, 0.9, 0.4, 0.3, 0.3, 0.2, 0.8, 0.1];
        let w = [2u32, 0, 1, 3, 1, 0, 2, 1];
        let d = data(&labels, &scores);
        let sorted_w: Vec<u32> = d.ranked.order.iter().map(|&i| w[i]).collect();
        let weighted = d.weighted(&sorted_w, &BinaryOptions::default());
        let (mut l2, mut s2) = (Vec::new(), Vec::new());
        for i in 0..labels.len() {
            for _ in 0..w[i] {
                l2.push(labels[i]);
                s2.push(scores[i]);
            }
        }
        let dup = data(&l2, &s2).metrics(&BinaryOptions::default());
        assert_eq!(weighted, dup);
        assert_eq!(d.ranked.auc(|j| sorted_w[j]), dup.auc);
    }

    #[test]
    fn rejects_non_finite_scores_and_mismatched_lengths() {
        assert!(matches!(
            BinaryData::new(&[true, false], &[0.1, f64::NAN]),
            Err(MetricsError::NotFinite { index: 1, .. })
        ));
        assert!(matches!(
            BinaryData::new(&[true], &[0.1, 0.2]),
            Err(MetricsError::Length { .. })
        ));
        assert!(matches!(
            BinaryData::new(&[], &[]),
            Err(MetricsError::Empty)
        ));
    }

    #[test]
    fn operating_points_meet_their_targets_with_the_best_other_rate() {
        // Sorted: 0.9 P, 0.8 P, 0.7 N, 0.6 P, 0.3 N, 0.2 N.
        let d = data(&[1, 1, 0, 1, 0, 0], &[0.9, 0.8, 0.7, 0.6, 0.3, 0.2]);
        // Sensitivity >= 0.9 needs all three positives: threshold 0.6, specificity 2/3.
        let p = d
            .operating_point(OperatingRule::MinSensitivity(0.9))
            .unwrap();
        assert_eq!(
            (p.threshold, p.sensitivity, p.specificity),
            (0.6, 1.0, 2.0 / 3.0)
        );
        // Sensitivity >= 0.6 needs two: the higher threshold 0.8 keeps specificity 1.
        let p = d
            .operating_point(OperatingRule::MinSensitivity(0.6))
            .unwrap();
        assert_eq!((p.threshold, p.specificity), (0.8, 1.0));
        // Specificity >= 0.6 allows one false positive: down to 0.6, sensitivity 1.
        let p = d
            .operating_point(OperatingRule::MinSpecificity(0.6))
            .unwrap();
        assert_eq!(
            (p.threshold, p.sensitivity, p.specificity),
            (0.6, 1.0, 2.0 / 3.0)
        );
        let y = d.operating_point(OperatingRule::Youden).unwrap();
        assert_eq!(y.threshold, 0.8);
        // A negative scored highest: specificity 1 is out of reach but for "nothing positive".
        let d = data(&[0, 1, 0], &[0.9, 0.5, 0.1]);
        let p = d
            .operating_point(OperatingRule::MinSpecificity(1.0))
            .unwrap();
        assert!(p.threshold > 0.9 && p.sensitivity == 0.0 && p.specificity == 1.0);
        assert_eq!(
            data(&[1, 1], &[0.2, 0.3]).operating_point(OperatingRule::Youden),
            None
        );
    }

    #[test]
    fn confusion_at_a_fixed_threshold() {
        let pos = [true, true, false, true, false, false];
        let scores = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2];
        let c = Confusion::at(&pos, &scores, 0.7, &[1; 6]);
        assert_eq!(
            c,
            Confusion {
                tp: 2,
                fp: 1,
                tn: 2,
                fn_: 1
            }
        );
        let [sens, spec, ppv, npv, f1, acc] = c.rates();
        assert_eq!(
            (sens, spec, ppv, npv),
            (2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0)
        );
        assert_eq!((f1, acc), (2.0 / 3.0, 4.0 / 6.0));
        assert_eq!(Confusion::at(&pos, &scores, 0.7, &[0, 2, 0, 0, 0, 0]).tp, 2);
        assert_eq!(percent(0.9), "90%");
        assert_eq!(percent(0.875), "87.5%");
    }

    #[test]
    fn paired_test_of_a_model_against_itself_finds_nothing() {
        let labels = [1u8, 0, 1, 0, 0, 1, 1, 0, 1, 0];
        let scores = [0.9, 0.2, 0.4, 0.3, 0.5, 0.7, 0.8, 0.1, 0.35, 0.6];
        let d = data(&labels, &scores);
        let b = Bootstrap {
            resamples: 200,
            ..Bootstrap::default()
        };
        let t = d
            .paired(&d, &BinaryOptions::default(), &Units::Items(10), &b)
            .unwrap();
        assert_eq!(t[0].diff, 0.0);
        assert_eq!(t[0].p_value, Some(1.0));
    }
}
