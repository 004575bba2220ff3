//! Probability calibration: a map fitted on a model's validation predictions that makes
//! its probabilities mean what they say, and the figures that measure how well they do
//! (Brier score, expected calibration error).
//!
//! Why a model needs it: class weighting, balanced sampling, label smoothing and mixup all
//! shift a network's outputs away from the frequencies it will meet. A model trained with
//! the classes weighted 3:1 says 0.9 where one case in two is positive.
//!
//! The map, in one form for every head: with `z_c = ln p_c` (the model's log-probabilities,
//! floored at `ln 1e-7` so that a saturated float32 output stays finite), the calibrated
//! probabilities are `softmax(a z + b)`, one slope `a > 0` and one bias per class (`b_0 = 0`).
//! - For a binary model this is exactly **Platt scaling** on the model's logit:
//!   `p' = sigmoid(a logit(p) + b_1)`. A slope alone (temperature scaling) cannot undo a
//!   shift of the base rate, which is what weighting and sampling cause; the bias does.
//! - For a multiclass model it is **temperature scaling with a bias per class** (Alexandari
//!   et al., 2020, "bias-corrected temperature scaling"): one temperature `1/a` for the
//!   sharpness, and a bias per class for the shifted class frequencies.
//!
//! Every such map is monotone in each class's score, so a binary model's ranking (its
//! AUC) is unchanged; only what the numbers mean changes.
//!
//! The fit minimises the cross-entropy to Platt's smoothed targets (a case of class `c`,
//! which has `n_c` validation cases, targets `(n_c + 1) / (n_c + 2)` for its class and
//! shares the rest among the others), which keeps the fit finite when validation
//! separates the classes perfectly. The problem is convex in `(a, b)`; it is solved by
//! Newton's method with a backtracking line search.

use serde::{Deserialize, Serialize};

use super::bootstrap::quantile;
use super::rng::Xoshiro256;

/// The floor of a probability before its logarithm is taken.
const FLOOR: f64 = 1e-7;

/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 10;

/// A fitted calibration map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `platt` (binary) or `temperature_bias` (multiclass).
    pub method: String,
    /// The slope `a` on the log-probabilities (1 / temperature).
    pub slope: f64,
    /// One bias per class, the first 0.
    pub bias: Vec<f64>,
    /// Validation cases it was fitted on.
    pub fitted_on: usize,
}

impl Calibration {
    /// The map that changes nothing, for `k` classes.
    pub fn identity(k: usize) -> Calibration {
        Calibration {
            method: method_name(k).to_owned(),
            slope: 1.0,
            bias: vec![0.0; k],
            fitted_on: 0,
        }
    }

    /// Fits the map on validation predictions: `labels[i]` is case `i`'s class and
    /// `probs[c][i]` its predicted probability of class `c`. Needs every class at least once
    /// and at least two classes; otherwise returns an error in words.
    pub fn fit(labels: &[u32], probs: &[Vec<f64>]) -> Result<Calibration, String> {
        let k = probs.len();
        let n = labels.len();
        if k < 2 {
            return Err("calibration needs at least two classes".into());
        }
        if probs.iter().any(|p| p.len() != n) {
            return Err("calibration needs one probability per class and case".into());
        }
        let mut counts = vec![0usize; k];
        for &l in labels {
            let c = l as usize;
            if c >= k {
                return Err(format!("label {l} is not one of the {k} classes"));
            }
            counts[c] += 1;
        }
        if let Some(c) = counts.iter().position(|&x| x == 0) {
            return Err(format!(
                "calibration needs every class in validation, and class {c} has no case"
            ));
        }
        let z = log_probs(probs);
        let targets: Vec<Vec<f64>> = labels
            .iter()
            .map(|&l| {
                let nc = counts[l as usize] as f64;
                let own = (nc + 1.0) / (nc + 2.0);
                let rest = (1.0 - own) / (k - 1) as f64;
                (0..k)
                    .map(|c| if c == l as usize { own } else { rest })
                    .collect()
            })
            .collect();
        // Parameters: theta[0] = a, theta[c] = b_c for c >= 1 (b_0 = 0).
        let mut theta = vec![0.0; k];
        theta[0] = 1.0;
        let mut loss = objective(&theta, &z, &targets);
        for _ in 0..200 {
            let (g, h) = gradient_hessian(&theta, &z, &targets);
            if g.iter().map(|x| x.abs()).fold(0.0, f64::max) < 1e-10 * n as f64 {
                break;
            }
            let Some(step) = solve(h, g.iter().map(|x| -x).collect()) else {
                break;
            };
            // Backtrack until the loss falls and the slope stays positive.
            let mut t = 1.0;
            let mut moved = false;
            while t > 1e-12 {
                let next: Vec<f64> = theta.iter().zip(&step).map(|(x, d)| x + t * d).collect();
                if next[0] > 1e-6 {
                    let l = objective(&next, &z, &targets);
                    if l.is_finite() && l <= loss {
                        moved = loss - l > 1e-15 * n as f64;
                        theta = next;
                        loss = l;
                        break;
                    }
                }
                t /= 2.0;
            }
            if !moved {
                break;
            }
        }
        let mut bias = theta.clone();
        bias[0] = 0.0;
        Ok(Calibration {
            method: method_name(k).to_owned(),
            slope: theta[0],
            bias,
            fitted_on: n,
        })
    }

    /// Fits a binary model's map from its positive-class probabilities.
    pub fn fit_binary(positive: &[bool], probs: &[f64]) -> Result<Calibration, String> {
        let labels: Vec<u32> = positive.iter().map(|&p| u32::from(p)).collect();
        Calibration::fit(&labels, &binary_columns(probs))
    }

    /// The calibrated probabilities `[class][case]` of `probs` (same shape).
    pub fn apply(&self, probs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let z = log_probs(probs);
        let k = probs.len();
        let n = probs.first().map_or(0, Vec::len);
        let mut out: Vec<Vec<f64>> = (0..k).map(|_| Vec::with_capacity(n)).collect();
        for zi in &z {
            let p = softmax(&affine(self.slope, &self.bias, zi));
            for (c, v) in p.into_iter().enumerate() {
                out[c].push(v);
            }
        }
        out
    }

    /// The calibrated positive-class probability of one binary prediction.
    pub fn apply_binary(&self, p: f64) -> f64 {
        let logit = p.max(FLOOR).ln() - (1.0 - p).max(FLOOR).ln();
        let b = self.bias.get(1).copied().unwrap_or(0.0);
        1.0 / (1.0 + (-(self.slope * logit + b)).exp())
    }
}

fn method_name(k: usize) -> &'static str {
    if k == 2 { "platt" } else { "temperature_bias" }
}

/// A binary model's positive-class probabilities as two columns `[1 - p, p]`.
pub fn binary_columns(probs: &[f64]) -> Vec<Vec<f64>> {
    vec![probs.iter().map(|p| 1.0 - p).collect(), probs.to_vec()]
}

/// Per case, the floored log-probability of each class.
fn log_probs(probs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = probs.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| probs.iter().map(|p| p[i].max(FLOOR).ln()).collect())
        .collect()
}

fn affine(a: f64, b: &[f64], z: &[f64]) -> Vec<f64> {
    z.iter().zip(b).map(|(z, b)| a * z + b).collect()
}

fn softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

fn bias_of(theta: &[f64]) -> Vec<f64> {
    let mut b = theta.to_vec();
    b[0] = 0.0;
    b
}

/// The cross-entropy of `softmax(a z + b)` to the targets.
fn objective(theta: &[f64], z: &[Vec<f64>], targets: &[Vec<f64>]) -> f64 {
    let b = bias_of(theta);
    z.iter()
        .zip(targets)
        .map(|(zi, ti)| {
            let l = affine(theta[0], &b, zi);
            let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + l.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            ti.iter().zip(&l).map(|(t, l)| t * (lse - l)).sum::<f64>()
        })
        .sum()
}

/// Gradient and Hessian of [`objective`] in `theta`. The logit of class `c` is
/// `theta . phi_c` with `phi_c = (z_c, e_c)` (no `e_0`), so the Hessian is the covariance of
/// `phi` under the predicted distribution, summed over cases.
fn gradient_hessian(
    theta: &[f64],
    z: &[Vec<f64>],
    targets: &[Vec<f64>],
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let k = theta.len();
    let b = bias_of(theta);
    let mut g = vec![0.0; k];
    let mut h = vec![vec![0.0; k]; k];
    let phi = |zi: &[f64], c: usize| -> Vec<f64> {
        let mut v = vec![0.0; k];
        v[0] = zi[c];
        if c > 0 {
            v[c] = 1.0;
        }
        v
    };
    for (zi, ti) in z.iter().zip(targets) {
        let p = softmax(&affine(theta[0], &b, zi));
        let mut mean = vec![0.0; k];
        for c in 0..k {
            let f = phi(zi, c);
            for j in 0..k {
                // The targets sum to one, so the gradient is the usual `p - t`.
                g[j] += (p[c] - ti[c]) * f[j];
                mean[j] += p[c] * f[j];
            }
        }
        for (c, &pc) in p.iter().enumerate() {
            let f = phi(zi, c);
            for (r, row) in h.iter_mut().enumerate() {
                for (s, cell) in row.iter_mut().enumerate() {
                    *cell += pc * (f[r] - mean[r]) * (f[s] - mean[s]);
                }
            }
        }
    }
    // A whisper of damping keeps the system solvable when a direction is flat.
    for (r, row) in h.iter_mut().enumerate() {
        row[r] += 1e-9 * z.len().max(1) as f64;
    }
    (g, h)
}

/// Solves `h x = rhs` by Gaussian elimination with partial pivoting.
fn solve(mut h: Vec<Vec<f64>>, mut rhs: Vec<f64>) -> Option<Vec<f64>> {
    let k = rhs.len();
    for col in 0..k {
        let pivot = (col..k).max_by(|&a, &b| h[a][col].abs().total_cmp(&h[b][col].abs()))?;
        if h[pivot][col].abs() < 1e-300 {
            return None;
        }
        h.swap(col, pivot);
        rhs.swap(col, pivot);
        let (top, below) = h.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, row) in below.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (cell, &above) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *cell -= f * above;
            }
            rhs[col + 1 + offset] -= f * rhs[col];
        }
    }
    let mut x = vec![0.0; k];
    for r in (0..k).rev() {
        let s: f64 = (r + 1..k).map(|c| h[r][c] * x[c]).sum();
        x[r] = (rhs[r] - s) / h[r][r];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The Brier score under per-case weights: the mean over cases of the squared distance
/// between the predicted distribution and the one-hot label, summed over classes and
/// halved for two classes, so that a binary model's score is the familiar `mean (p - y)²`.
/// NaN when no case has weight.
pub fn brier(labels: &[u32], probs: &[Vec<f64>], w: &[u32]) -> f64 {
    let k = probs.len();
    let (mut sum, mut total) = (0.0, 0.0);
    for (i, (&l, &wi)) in labels.iter().zip(w).enumerate() {
        if wi == 0 {
            continue;
        }
        let e: f64 = (0..k)
            .map(|c| {
                let y = if c == l as usize { 1.0 } else { 0.0 };
                (probs[c][i] - y).powi(2)
            })
            .sum();
        sum += f64::from(wi) * e;
        total += f64::from(wi);
    }
    let scale = if k == 2 { 0.5 } else { 1.0 };
    if total == 0.0 {
        f64::NAN
    } else {
        scale * sum / total
    }
}

/// What the calibration figures read of case `i` (labelled `label`): for two classes the
/// positive-class probability and whether the case is positive, for more the top class's
/// probability and whether it is right; and the probability's bin.
fn binned(probs: &[Vec<f64>], label: u32, i: usize) -> (f64, bool, usize) {
    let (score, correct) = if probs.len() == 2 {
        (probs[1][i], label == 1)
    } else {
        let top = (0..probs.len())
            .max_by(|&a, &b| probs[a][i].total_cmp(&probs[b][i]))
            .unwrap_or(0);
        (probs[top][i], top == label as usize)
    };
    (
        score,
        correct,
        ((score * ECE_BINS as f64) as usize).min(ECE_BINS - 1),
    )
}

/// The expected calibration error under per-case weights, over [`ECE_BINS`] equal-width
/// bins: for two classes, of the positive-class probability against the observed rate of
/// positives; for more, of the top class's probability against how often the top class is
/// right (Guo et al., 2017). NaN when no case has weight.
pub fn ece(labels: &[u32], probs: &[Vec<f64>], w: &[u32]) -> f64 {
    let mut conf = [0.0f64; ECE_BINS];
    let mut hit = [0.0f64; ECE_BINS];
    let mut count = [0.0f64; ECE_BINS];
    let mut total = 0.0;
    for (i, (&l, &wi)) in labels.iter().zip(w).enumerate() {
        if wi == 0 {
            continue;
        }
        let (score, correct, bin) = binned(probs, l, i);
        let wf = f64::from(wi);
        conf[bin] += wf * score;
        hit[bin] += wf * f64::from(u8::from(correct));
        count[bin] += wf;
        total += wf;
    }
    if total == 0.0 {
        return f64::NAN;
    }
    (0..ECE_BINS)
        .filter(|&b| count[b] > 0.0)
        .map(|b| (conf[b] - hit[b]).abs() / total)
        .sum()
}

/// What the expected calibration error of perfectly calibrated probabilities would be on
/// these cases, by chance alone: Bröcker and Smith's consistency resampling (2007). Each of
/// `draws` times, every case's label is drawn from its own predicted distribution (so the
/// probabilities are right by construction) and the ECE computed; the mean and the 2.5% and
/// 97.5% quantiles are returned. On a hundred cases this floor is near 0.07: an observed ECE
/// inside the range is what calibrated probabilities look like on so few cases.
pub fn ece_if_calibrated(probs: &[Vec<f64>], draws: usize, seed: u64) -> Option<(f64, f64, f64)> {
    let k = probs.len();
    let n = probs.first().map_or(0, Vec::len);
    if k < 2 || n == 0 || draws == 0 {
        return None;
    }
    let ones = vec![1u32; n];
    let mut labels = vec![0u32; n];
    let mut values: Vec<f64> = (0..draws)
        .map(|d| {
            let mut rng = Xoshiro256::stream(seed, d as u64);
            for (i, label) in labels.iter_mut().enumerate() {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let mut acc = 0.0;
                *label = (k - 1) as u32;
                for (c, column) in probs.iter().enumerate() {
                    acc += column[i];
                    if u < acc {
                        *label = c as u32;
                        break;
                    }
                }
            }
            ece(&labels, probs, &ones)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Some((mean, quantile(&values, 0.025), quantile(&values, 0.975)))
}

/// One bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReliabilityBin {
    /// The bin's lower edge.
    pub from: f64,
    /// The bin's upper edge.
    pub to: f64,
    /// Cases in the bin.
    pub n: usize,
    /// Mean predicted probability in the bin.
    pub predicted: f64,
    /// Observed rate (of positives, or of a correct top class).
    pub observed: f64,
}

/// The reliability diagram's bins (those with cases), as [`ece`] bins them.
pub fn reliability(labels: &[u32], probs: &[Vec<f64>]) -> Vec<ReliabilityBin> {
    let mut bins: Vec<(f64, f64, usize)> = vec![(0.0, 0.0, 0); ECE_BINS];
    for (i, &l) in labels.iter().enumerate() {
        let (score, correct, b) = binned(probs, l, i);
        bins[b].0 += score;
        bins[b].1 += f64::from(u8::from(correct));
        bins[b].2 += 1;
    }
    bins.into_iter()
        .enumerate()
        .filter(|(_, b)| b.2 > 0)
        .map(|(j, (s, h, n))| ReliabilityBin {
            from: j as f64 / ECE_BINS as f64,
            to: (j + 1) as f64 / ECE_BINS as f64,
            n,
            predicted: s / n as f64,
            observed: h / n as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(r: &mut Xoshiro256) -> f64 {
        (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Cases whose true probability is `sigmoid(s)`, with `s` uniform on [-4, 4], reported
    /// by a model as `sigmoid(report(s))`.
    fn cases(n: usize, seed: u64, report: impl Fn(f64) -> f64) -> (Vec<bool>, Vec<f64>) {
        let mut r = Xoshiro256::seed_from(seed);
        (0..n)
            .map(|_| {
                let s = -4.0 + 8.0 * uniform(&mut r);
                (uniform(&mut r) < sigmoid(s), sigmoid(report(s)))
            })
            .unzip()
    }

    #[test]
    fn platt_recovers_a_known_distortion() {
        // The model says sigmoid((s + 1) / 2): too flat and shifted. The inverse map is
        // a = 2, b = -1, and the fit must find it.
        let (y, p) = cases(40_000, 1, |s| (s + 1.0) / 2.0);
        let c = Calibration::fit_binary(&y, &p).unwrap();
        assert_eq!(c.method, "platt");
        assert!((c.slope - 2.0).abs() < 0.08, "{c:?}");
        assert!((c.bias[1] + 1.0).abs() < 0.08, "{c:?}");
        let cal = c.apply(&binary_columns(&p));
        let labels: Vec<u32> = y.iter().map(|&b| u32::from(b)).collect();
        let ones = vec![1; y.len()];
        let before = ece(&labels, &binary_columns(&p), &ones);
        let after = ece(&labels, &cal, &ones);
        assert!(before > 0.08 && after < 0.02, "ECE {before} -> {after}");
        assert!(brier(&labels, &cal, &ones) < brier(&labels, &binary_columns(&p), &ones));
        // apply_binary is the same map.
        for i in 0..20 {
            assert!((c.apply_binary(p[i]) - cal[1][i]).abs() < 1e-12);
        }
    }

    #[test]
    fn a_calibrated_model_is_left_nearly_alone() {
        let (y, p) = cases(40_000, 2, |s| s);
        let c = Calibration::fit_binary(&y, &p).unwrap();
        assert!(
            (c.slope - 1.0).abs() < 0.05 && c.bias[1].abs() < 0.05,
            "{c:?}"
        );
    }

    #[test]
    fn separable_validation_keeps_the_fit_finite() {
        let y = [false, false, true, true];
        let p = [0.1, 0.2, 0.8, 0.9];
        let c = Calibration::fit_binary(&y, &p).unwrap();
        assert!(
            c.slope.is_finite() && c.slope > 0.0 && c.bias[1].is_finite(),
            "{c:?}"
        );
        // Platt's targets: no calibrated probability reaches 0 or 1.
        for v in c.apply(&binary_columns(&p))[1].iter() {
            assert!(*v > 0.05 && *v < 0.95, "{v}");
        }
    }

    #[test]
    fn temperature_and_bias_undo_a_shift_of_class_frequencies() {
        // Three classes; the model's log-probabilities are the truth's, sharpened twice and
        // with class 2 boosted by 1.5 (as class-balanced sampling of a rare class does).
        let mut r = Xoshiro256::seed_from(3);
        let n = 30_000;
        let mut labels = Vec::with_capacity(n);
        let mut probs: Vec<Vec<f64>> = (0..3).map(|_| Vec::with_capacity(n)).collect();
        for _ in 0..n {
            let truth = [
                2.0 * uniform(&mut r),
                2.0 * uniform(&mut r),
                2.0 * uniform(&mut r) - 1.0,
            ];
            let p = softmax(&truth);
            let u = uniform(&mut r);
            labels.push(if u < p[0] {
                0
            } else if u < p[0] + p[1] {
                1
            } else {
                2
            });
            let q = softmax(&[2.0 * truth[0], 2.0 * truth[1], 2.0 * truth[2] + 1.5]);
            for c in 0..3 {
                probs[c].push(q[c]);
            }
        }
        let c = Calibration::fit(&labels, &probs).unwrap();
        assert_eq!(c.method, "temperature_bias");
        assert!((c.slope - 0.5).abs() < 0.05, "{c:?}");
        assert!(
            c.bias[1].abs() < 0.1 && (c.bias[2] + 0.75).abs() < 0.1,
            "{c:?}"
        );
        let ones = vec![1; n];
        assert!(ece(&labels, &c.apply(&probs), &ones) < ece(&labels, &probs, &ones));
    }

    #[test]
    fn the_ece_of_calibrated_probabilities_on_few_cases_is_not_zero() {
        // A hundred cases whose probabilities are right by construction: their ECE is
        // noise, and the floor says how much; on ten thousand it nearly vanishes.
        let (y, p) = cases(100, 4, |s| s);
        let (mean, lo, hi) = ece_if_calibrated(&binary_columns(&p), 500, 1).unwrap();
        assert!(mean > 0.04 && mean < 0.12, "{mean}");
        assert!(lo < mean && mean < hi);
        let labels: Vec<u32> = y.iter().map(|&b| u32::from(b)).collect();
        let observed = ece(&labels, &binary_columns(&p), &vec![1; 100]);
        assert!(
            observed > lo && observed < hi,
            "{observed} outside {lo}..{hi}"
        );
        let p = cases(10_000, 5, |s| s).1;
        let (big, _, _) = ece_if_calibrated(&binary_columns(&p), 50, 1).unwrap();
        assert!(big < 0.02, "{big}");
        // A model far off is far outside the floor.
        let (y, p) = cases(100, 6, |s| s + 2.0);
        let labels: Vec<u32> = y.iter().map(|&b| u32::from(b)).collect();
        let (_, _, hi) = ece_if_calibrated(&binary_columns(&p), 500, 1).unwrap();
        assert!(ece(&labels, &binary_columns(&p), &vec![1; 100]) > hi);
    }

    #[test]
    fn a_class_without_validation_cases_is_an_error() {
        assert!(Calibration::fit(&[0, 0, 1], &[vec![0.5; 3], vec![0.3; 3], vec![0.2; 3]]).is_err());
        assert!(Calibration::fit_binary(&[true, true], &[0.4, 0.6]).is_err());
    }

    #[test]
    fn brier_and_ece_of_simple_cases() {
        let labels = [1u32, 0];
        let probs = binary_columns(&[0.8, 0.4]);
        let ones = [1, 1];
        // ((0.8 - 1)^2 + 0.4^2) / 2 = 0.1
        assert!((brier(&labels, &probs, &ones) - 0.1).abs() < 1e-12);
        // Bin 8: predicted 0.8, observed 1; bin 4: predicted 0.4, observed 0.
        assert!((ece(&labels, &probs, &ones) - (0.2 + 0.4) / 2.0).abs() < 1e-12);
        // Weights count cases.
        assert!((brier(&labels, &probs, &[2, 0]) - 0.04).abs() < 1e-12);
        let bins = reliability(&labels, &probs);
        assert_eq!(bins.len(), 2);
        assert_eq!((bins[0].n, bins[0].observed), (1, 0.0));
    }
}
