//! Confound analysis for a declared attribute (e.g. a chest drain): how the predicted
//! probability is distributed in each label × attribute subgroup, which share of the false
//! positives carry the attribute against the share expected from its prevalence among
//! negatives, and the raw and label-controlled (partial) correlation between predicted
//! probability and attribute.
//!
//! The partial correlation residualises both variables on the label (subtracting each
//! label group's mean) and correlates the residuals; with a binary label this equals the
//! textbook formula `(r_xy - r_xz r_yz) / sqrt((1 - r_xz²)(1 - r_yz²))`. Every figure is a
//! function of per-case weights, so the bootstrap resamples it like the other metrics.

use super::bootstrap::quantile;

/// The figures the bootstrap resamples, in the order [`ConfoundData::stats`] returns them.
pub const CONFOUND_NAMES: [&str; 4] = [
    "fp_share_with_attribute",
    "expected_fp_share",
    "pearson",
    "partial_correlation",
];

/// The predicted-probability distribution of one label × attribute subgroup.
#[derive(Clone, Debug, PartialEq)]
pub struct Subgroup {
    /// Label of the subgroup.
    pub positive: bool,
    /// Whether the subgroup has the attribute.
    pub attribute: bool,
    /// Cases in it.
    pub n: usize,
    /// Median predicted probability (NaN when empty).
    pub median: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
}

/// Predictions with an attribute, ready for the confound figures.
#[derive(Clone, Debug)]
pub struct ConfoundData<'a> {
    positive: &'a [bool],
    scores: &'a [f64],
    attribute: &'a [f64],
    present: &'a [bool],
    threshold: f64,
}

impl<'a> ConfoundData<'a> {
    /// `threshold` decides the false positives (score >= threshold), e.g. the Youden threshold.
    /// All slices have one entry per case.
    pub fn new(
        positive: &'a [bool],
        scores: &'a [f64],
        attribute: &'a [f64],
        present: &'a [bool],
        threshold: f64,
    ) -> Self {
        ConfoundData {
            positive,
            scores,
            attribute,
            present,
            threshold,
        }
    }

    /// The four bootstrapped figures under per-case weights; NaN where a figure is undefined
    /// (no false positives, no negatives, or no variance left after controlling for the label).
    pub fn stats(&self, w: &[u32]) -> Vec<f64> {
        let (mut fp, mut fp_with, mut neg, mut neg_with) = (0.0, 0.0, 0.0, 0.0);
        for (i, &weight) in w.iter().enumerate().take(self.scores.len()) {
            let wi = f64::from(weight);
            if wi == 0.0 || self.positive[i] {
                continue;
            }
            neg += wi;
            if self.present[i] {
                neg_with += wi;
            }
            if self.scores[i] >= self.threshold {
                fp += wi;
                if self.present[i] {
                    fp_with += wi;
                }
            }
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        vec![
            ratio(fp_with, fp),
            ratio(neg_with, neg),
            weighted_pearson(self.scores, self.attribute, w, None),
            weighted_pearson(self.scores, self.attribute, w, Some(self.positive)),
        ]
    }

    /// The predicted-probability distribution of each label × attribute subgroup, in the order
    /// (negative, absent), (negative, present), (positive, absent), (positive, present).
    pub fn subgroups(&self) -> Vec<Subgroup> {
        let mut out = Vec::with_capacity(4);
        for positive in [false, true] {
            for attribute in [false, true] {
                let mut xs: Vec<f64> = (0..self.scores.len())
                    .filter(|&i| self.positive[i] == positive && self.present[i] == attribute)
                    .map(|i| self.scores[i])
                    .collect();
                xs.sort_by(f64::total_cmp);
                let q = |p: f64| {
                    if xs.is_empty() {
                        f64::NAN
                    } else {
                        quantile(&xs, p)
                    }
                };
                out.push(Subgroup {
                    positive,
                    attribute,
                    n: xs.len(),
                    median: q(0.5),
                    q1: q(0.25),
                    q3: q(0.75),
                });
            }
        }
        out
    }
}

/// Weighted Pearson correlation of `x` and `y`; with `groups`, of their residuals after
/// subtracting each group's weighted mean (the partial correlation controlling for it).
fn weighted_pearson(x: &[f64], y: &[f64], w: &[u32], groups: Option<&[bool]>) -> f64 {
    let group_of = |i: usize| groups.map_or(0, |g| usize::from(g[i]));
    let (mut sw, mut sx, mut sy) = ([0.0f64; 2], [0.0f64; 2], [0.0f64; 2]);
    for i in 0..x.len() {
        let wi = f64::from(w[i]);
        let g = group_of(i);
        sw[g] += wi;
        sx[g] += wi * x[i];
        sy[g] += wi * y[i];
    }
    let mean = |s: [f64; 2], g: usize| if sw[g] > 0.0 { s[g] / sw[g] } else { 0.0 };
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for i in 0..x.len() {
        let wi = f64::from(w[i]);
        if wi == 0.0 {
            continue;
        }
        let g = group_of(i);
        let dx = x[i] - mean(sx, g);
        let dy = y[i] - mean(sy, g);
        sxx += wi * dx * dx;
        syy += wi * dy * dy;
        sxy += wi * dx * dy;
    }
    let denom = (sxx * syy).sqrt();
    // Relative to the data's scale, a zero variance stays zero up to rounding.
    if denom <= 1e-12 * (1.0 + sxx.abs() + syy.abs()) {
        f64::NAN
    } else {
        sxy / denom
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::rng::Xoshiro256;

    fn pearson(x: &[f64], y: &[f64]) -> f64 {
        weighted_pearson(x, y, &vec![1; x.len()], None)
    }

    #[test]
    fn partial_correlation_matches_the_textbook_formula() {
        let mut rng = Xoshiro256::stream(7, 0);
        let n = 500;
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let z: Vec<bool> = (0..n).map(|_| u() < 0.4).collect();
        let zf: Vec<f64> = z.iter().map(|&b| f64::from(u8::from(b))).collect();
        let y: Vec<f64> = zf.iter().map(|&v| 0.6 * v + 0.5 * u()).collect();
        let x: Vec<f64> = (0..n)
            .map(|i| 0.5 * zf[i] + 0.3 * y[i] + 0.4 * u())
            .collect();
        let (rxy, rxz, ryz) = (pearson(&x, &y), pearson(&x, &zf), pearson(&y, &zf));
        let formula = (rxy - rxz * ryz) / ((1.0 - rxz * rxz) * (1.0 - ryz * ryz)).sqrt();
        let ours = weighted_pearson(&x, &y, &vec![1; n], Some(&z));
        assert!((formula - ours).abs() < 1e-12, "{formula} vs {ours}");
        assert!(
            ours > 0.2 && ours < rxy,
            "controlling for z removes the shared part"
        );
    }

    #[test]
    fn weights_are_repetitions() {
        let x = [0.1, 0.4, 0.35, 0.8, 0.7];
        let y = [0.0, 1.0, 0.0, 1.0, 1.0];
        let g = [false, false, true, true, true];
        let repeated_x = [0.1, 0.4, 0.4, 0.35, 0.8, 0.7, 0.7, 0.7];
        let repeated_y = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let repeated_g = [false, false, false, true, true, true, true, true];
        let w = [1, 2, 1, 1, 3];
        let a = weighted_pearson(&x, &y, &w, Some(&g));
        let b = weighted_pearson(&repeated_x, &repeated_y, &[1; 8], Some(&repeated_g));
        assert!((a - b).abs() < 1e-12);
    }

    #[test]
    fn false_positive_shares_and_subgroups() {
        // Negatives: 4 with the attribute, 4 without; false positives at threshold 0.5:
        // three with it, one without.
        let positive = [
            false, false, false, false, false, false, false, false, true, true,
        ];
        let scores = [0.9, 0.8, 0.7, 0.1, 0.6, 0.2, 0.3, 0.1, 0.9, 0.4];
        let attribute = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let present: Vec<bool> = attribute.iter().map(|a| *a >= 0.5).collect();
        let d = ConfoundData::new(&positive, &scores, &attribute, &present, 0.5);
        let s = d.stats(&[1; 10]);
        assert_eq!(s[0], 0.75);
        assert_eq!(s[1], 0.5);
        assert!(s[2] > 0.5 && s[3] > 0.5);
        let groups = d.subgroups();
        assert_eq!(groups.iter().map(|g| g.n).collect::<Vec<_>>(), [4, 4, 1, 1]);
        assert_eq!(groups[1].median, 0.75);
    }

    #[test]
    fn undefined_figures_are_nan() {
        // The attribute equals the label: nothing is left once the label is controlled for.
        let positive = [false, false, true, true];
        let attribute = [0.0, 0.0, 1.0, 1.0];
        let present = [false, false, true, true];
        let d = ConfoundData::new(&positive, &[0.1, 0.2, 0.8, 0.9], &attribute, &present, 0.95);
        let s = d.stats(&[1; 4]);
        assert!(s[0].is_nan(), "no false positives");
        assert!(s[3].is_nan(), "no variance after controlling for the label");
    }
}
