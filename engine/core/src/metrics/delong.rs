//! DeLong's test for the difference between two correlated ROC AUCs (two models scored on
//! the same cases), with the midrank algorithm of Sun and Xu (2014): O(n log n).
//!
//! DeLong, DeLong and Clarke-Pearson, "Comparing the areas under two or more correlated
//! receiver operating characteristic curves: a nonparametric approach", Biometrics 44
//! (1988); Sun and Xu, "Fast implementation of DeLong's algorithm for comparing the areas
//! under correlated receiver operating characteristic curves", IEEE Signal Processing
//! Letters 21 (2014).

use super::error::MetricsError;

/// The outcome of DeLong's test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeLong {
    /// AUC of model A.
    pub auc_a: f64,
    /// AUC of model B.
    pub auc_b: f64,
    /// DeLong variance of model A's AUC.
    pub var_a: f64,
    /// DeLong variance of model B's AUC.
    pub var_b: f64,
    /// DeLong covariance of the two AUCs.
    pub covariance: f64,
    /// `auc_a - auc_b`.
    pub diff: f64,
    /// Standard error of the difference.
    pub se: f64,
    /// `diff / se` (0 when both are 0; infinite when only `se` is).
    pub z: f64,
    /// Two-sided p-value from the standard normal distribution.
    pub p_value: f64,
}

/// DeLong's test of `AUC(scores_a) = AUC(scores_b)` on the same cases, `positive[i]`
/// being the label of case `i`. Needs at least two cases of each class.
pub fn delong_test(
    positive: &[bool],
    scores_a: &[f64],
    scores_b: &[f64],
) -> Result<DeLong, MetricsError> {
    for (what, s) in [
        ("model A's scores", scores_a),
        ("model B's scores", scores_b),
    ] {
        if s.len() != positive.len() {
            return Err(MetricsError::Length {
                what,
                got: s.len(),
                want: positive.len(),
            });
        }
        if let Some((index, &value)) = s.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(MetricsError::NotFinite { index, value });
        }
    }
    let m = positive.iter().filter(|&&p| p).count();
    let n = positive.len() - m;
    if m < 2 || n < 2 {
        return Err(MetricsError::SingleClass(format!(
            "{m} positive and {n} negative cases (DeLong's test needs two of each)"
        )));
    }
    let a = components(positive, scores_a, m, n);
    let b = components(positive, scores_b, m, n);
    // Sample covariances (denominator m - 1 or n - 1) of the structural components.
    let cov = |x: &[f64], y: &[f64]| {
        let (mx, my) = (mean(x), mean(y));
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - mx) * (q - my))
            .sum::<f64>()
            / (x.len() - 1) as f64
    };
    let (mf, nf) = (m as f64, n as f64);
    let var_a = cov(&a.v10, &a.v10) / mf + cov(&a.v01, &a.v01) / nf;
    let var_b = cov(&b.v10, &b.v10) / mf + cov(&b.v01, &b.v01) / nf;
    let covariance = cov(&a.v10, &b.v10) / mf + cov(&a.v01, &b.v01) / nf;
    let diff = a.auc - b.auc;
    let se = (var_a + var_b - 2.0 * covariance).max(0.0).sqrt();
    let z = if se > 0.0 {
        diff / se
    } else if diff == 0.0 {
        0.0
    } else {
        diff.signum() * f64::INFINITY
    };
    Ok(DeLong {
        auc_a: a.auc,
        auc_b: b.auc,
        var_a,
        var_b,
        covariance,
        diff,
        se,
        z,
        p_value: erfc(z.abs() / std::f64::consts::SQRT_2),
    })
}

/// One model's AUC and structural components: `v10` per positive case (the share of
/// negatives it outranks, ties one half) and `v01` per negative case (the share of
/// positives that outrank it).
struct Components {
    auc: f64,
    v10: Vec<f64>,
    v01: Vec<f64>,
}

fn components(positive: &[bool], scores: &[f64], m: usize, n: usize) -> Components {
    let xs: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(s, _)| *s)
        .collect();
    let ys: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    let tx = midranks(&xs);
    let ty = midranks(&ys);
    let all: Vec<f64> = xs.iter().chain(&ys).copied().collect();
    let tz = midranks(&all);
    let (mf, nf) = (m as f64, n as f64);
    let v10: Vec<f64> = (0..m).map(|i| (tz[i] - tx[i]) / nf).collect();
    let v01: Vec<f64> = (0..n).map(|j| 1.0 - (tz[m + j] - ty[j]) / mf).collect();
    let auc = (tz[..m].iter().sum::<f64>() - mf * (mf + 1.0) / 2.0) / (mf * nf);
    Components { auc, v10, v01 }
}

/// Ranks from 1, ties sharing the mean of their ranks.
fn midranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut ranks = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        // Positions i..=j (from 0) hold ranks i + 1 ..= j + 1.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The complementary error function, to about 1e-15 absolute: a series with positive terms
/// below 3, a continued fraction above.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let two_over_sqrt_pi = std::f64::consts::FRAC_2_SQRT_PI;
    if x < 3.0 {
        // erf(x) = 2/sqrt(pi) exp(-x^2) sum_k (2 x^2)^k x / (1 3 5 ... (2k + 1)).
        let (mut term, mut sum) = (x, x);
        let mut k = 0.0;
        while term > sum * 1e-17 {
            k += 1.0;
            term *= 2.0 * x * x / (2.0 * k + 1.0);
            sum += term;
        }
        return 1.0 - two_over_sqrt_pi * (-x * x).exp() * sum;
    }
    if x > 27.0 {
        return 0.0;
    }
    // erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))).
    let mut t = x;
    for k in (1..=80).rev() {
        t = x + (f64::from(k) / 2.0) / t;
    }
    two_over_sqrt_pi / 2.0 * (-x * x).exp() / t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        // Values from Python's math.erfc.
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (1.959963984540054, 0.005574596680784415),
            (2.9, 4.109787809945886e-05),
            (3.5, 7.430983723414128e-07),
            (6.0, 2.1519736712498916e-17),
            (-1.0, 1.842700792949715),
        ] {
            let got = erfc(x);
            assert!(
                (got - want).abs() <= 1e-15 + 1e-12 * want,
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn midranks_share_ties() {
        assert_eq!(midranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn a_model_against_itself() {
        let pos = [true, false, true, false, true, false];
        let s = [0.9, 0.3, 0.6, 0.6, 0.8, 0.1];
        let d = delong_test(&pos, &s, &s).unwrap();
        assert_eq!(d.diff, 0.0);
        assert_eq!(d.p_value, 1.0);
        // Positives 0.9, 0.6, 0.8 against 0.3, 0.6, 0.1: 8.5 of 9 pairs.
        assert!((d.auc_a - 8.5 / 9.0).abs() < 1e-15);
    }

    #[test]
    fn needs_two_cases_of_each_class() {
        assert!(delong_test(&[true, false, false], &[0.1, 0.2, 0.3], &[0.1, 0.2, 0.3]).is_err());
    }
}
