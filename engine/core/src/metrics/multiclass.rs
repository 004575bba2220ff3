//! Multiclass classification metrics: one-vs-rest AUC per class and their macro mean, and,
//! from the argmax prediction, macro F1, per-class sensitivity and specificity, balanced
//! accuracy and accuracy.
//!
//! Conventions, as scikit-learn's:
//! - Per-class AUC is the binary AUC of "this class" against the rest on that class's
//!   probability column (see [`super::binary`] for ties); the macro AUC is their unweighted
//!   mean, `roc_auc_score(..., multi_class="ovr", average="macro")`. Rows need not sum to 1.
//! - The predicted class is the argmax of a row; on equal probabilities the first class
//!   (column order) wins, as `numpy.argmax`.
//! - Macro F1 averages over the classes that occur in the labels or the predictions
//!   (`f1_score(average="macro")`); balanced accuracy averages the recall of the classes
//!   that occur in the labels (`balanced_accuracy_score`).

use super::binary::Ranked;
use super::bootstrap::{Bootstrap, Estimate, Units};
use super::error::MetricsError;

/// Multiclass metrics of one sample; NaN marks an undefined value.
#[derive(Clone, Debug, PartialEq)]
pub struct MulticlassMetrics {
    /// Mean of the per-class one-vs-rest AUCs (NaN when any is undefined).
    pub macro_auc: f64,
    /// Macro-averaged F1 of the argmax prediction.
    pub macro_f1: f64,
    /// Mean recall over the classes present in the labels.
    pub balanced_accuracy: f64,
    /// Share of argmax predictions that are right.
    pub accuracy: f64,
    /// One-vs-rest AUC of each class.
    pub auc: Vec<f64>,
    /// F1 of each class.
    pub f1: Vec<f64>,
    /// Sensitivity (recall) of each class.
    pub sensitivity: Vec<f64>,
    /// Specificity of each class (of the cases not of the class, the share not predicted as it).
    pub specificity: Vec<f64>,
}

impl MulticlassMetrics {
    /// The names of [`MulticlassMetrics::values`], given the class names.
    pub fn names(classes: &[String]) -> Vec<String> {
        let mut names: Vec<String> = ["macro_auc", "macro_f1", "balanced_accuracy", "accuracy"]
            .map(String::from)
            .to_vec();
        for prefix in ["auc", "f1", "sensitivity", "specificity"] {
            names.extend(classes.iter().map(|c| format!("{prefix}/{c}")));
        }
        names
    }

    /// The values: the four summary figures, then each per-class figure for every class.
    pub fn values(&self) -> Vec<f64> {
        let mut v = vec![
            self.macro_auc,
            self.macro_f1,
            self.balanced_accuracy,
            self.accuracy,
        ];
        for per_class in [&self.auc, &self.f1, &self.sensitivity, &self.specificity] {
            v.extend(per_class);
        }
        v
    }
}

/// Multiclass predictions prepared for evaluation: each probability column sorted once.
#[derive(Clone, Debug)]
pub struct MulticlassData {
    labels: Vec<u32>,
    predicted: Vec<u32>,
    columns: Vec<Ranked>,
}

impl MulticlassData {
    /// Checks and prepares the predictions: `labels[i]` is the class of item `i` (from 0)
    /// and `scores[c][i]` its score for class `c`.
    pub fn new(labels: &[u32], scores: &[Vec<f64>]) -> Result<MulticlassData, MetricsError> {
        let k = scores.len();
        if k < 2 {
            return Err(MetricsError::TooFewClasses(k));
        }
        let n = labels.len();
        if n == 0 {
            return Err(MetricsError::Empty);
        }
        for col in scores {
            if col.len() != n {
                return Err(MetricsError::Length {
                    what: "class scores",
                    got: col.len(),
                    want: n,
                });
            }
            if let Some((index, &value)) = col.iter().enumerate().find(|(_, s)| !s.is_finite()) {
                return Err(MetricsError::NotFinite { index, value });
            }
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l as usize >= k) {
            return Err(MetricsError::Label {
                index,
                label,
                classes: k,
            });
        }
        let predicted = (0..n)
            .map(|i| {
                let mut best = 0;
                for c in 1..k {
                    if scores[c][i] > scores[best][i] {
                        best = c;
                    }
                }
                best as u32
            })
            .collect();
        let columns = scores
            .iter()
            .enumerate()
            .map(|(c, col)| {
                let positive: Vec<bool> = labels.iter().map(|&l| l as usize == c).collect();
                Ranked::new(&positive, col)
            })
            .collect();
        Ok(MulticlassData {
            labels: labels.to_vec(),
            predicted,
            columns,
        })
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.columns.len()
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no items (never true for a value built by [`MulticlassData::new`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The metrics on the original sample.
    pub fn metrics(&self) -> MulticlassMetrics {
        self.weighted(&vec![1; self.len()])
    }

    /// The metrics when item `i` counts `w[i]` times.
    fn weighted(&self, w: &[u32]) -> MulticlassMetrics {
        let k = self.classes();
        let auc: Vec<f64> = self
            .columns
            .iter()
            .map(|col| col.auc(|j| w[col.order[j]]))
            .collect();
        let macro_auc = auc.iter().sum::<f64>() / k as f64;

        // Confusion counts per class: true positives, labelled, predicted.
        let (mut tp, mut truth, mut pred) = (vec![0u64; k], vec![0u64; k], vec![0u64; k]);
        let mut total = 0u64;
        for ((&l, &p), &wi) in self.labels.iter().zip(&self.predicted).zip(w) {
            let wi = u64::from(wi);
            truth[l as usize] += wi;
            pred[p as usize] += wi;
            if l == p {
                tp[l as usize] += wi;
            }
            total += wi;
        }
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        let f1: Vec<f64> = (0..k)
            .map(|c| ratio(2 * tp[c], truth[c] + pred[c]))
            .collect();
        let sensitivity: Vec<f64> = (0..k).map(|c| ratio(tp[c], truth[c])).collect();
        let specificity: Vec<f64> = (0..k)
            .map(|c| {
                let negatives = total - truth[c];
                let false_pos = pred[c] - tp[c];
                ratio(negatives - false_pos, negatives)
            })
            .collect();
        let mean_defined = |xs: &[f64]| {
            let (s, m) = xs
                .iter()
                .filter(|x| !x.is_nan())
                .fold((0.0, 0usize), |(s, m), x| (s + x, m + 1));
            if m == 0 { f64::NAN } else { s / m as f64 }
        };
        MulticlassMetrics {
            macro_auc,
            macro_f1: mean_defined(&f1),
            balanced_accuracy: mean_defined(&sensitivity),
            accuracy: ratio(tp.iter().sum(), total),
            auc,
            f1,
            sensitivity,
            specificity,
        }
    }

    /// Every metric with its bootstrap interval, in the order of [`MulticlassMetrics::values`].
    pub fn bootstrap(
        &self,
        units: &Units,
        bootstrap: &Bootstrap,
    ) -> Result<Vec<Estimate>, MetricsError> {
        if units.items() != self.len() {
            return Err(MetricsError::Length {
                what: "resampling units",
                got: units.items(),
                want: self.len(),
            });
        }
        Ok(bootstrap.estimate(units, |w| self.weighted(w).values()))
    }

    /// The paired bootstrap comparison of two models' metrics on the same cases: `self` is
    /// model A, `other` model B, with the same cases in the same order.
    pub fn paired(
        &self,
        other: &MulticlassData,
        units: &Units,
        bootstrap: &Bootstrap,
    ) -> Result<Vec<super::bootstrap::PairedTest>, MetricsError> {
        if other.len() != self.len() || other.classes() != self.classes() {
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
        Ok(bootstrap.paired(
            units,
            |w| self.weighted(w).values(),
            |w| other.weighted(w).values(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_metrics_by_hand() {
        // Three classes; predictions (argmax): 0, 1, 1, 2, 0, 2.
        let labels = [0, 1, 2, 2, 0, 1];
        let scores = vec![
            vec![0.6, 0.1, 0.2, 0.1, 0.5, 0.3],
            vec![0.3, 0.8, 0.5, 0.2, 0.3, 0.3],
            vec![0.1, 0.1, 0.3, 0.7, 0.2, 0.4],
        ];
        let m = MulticlassData::new(&labels, &scores).unwrap().metrics();
        assert_eq!(m.accuracy, 4.0 / 6.0);
        assert_eq!(m.sensitivity, vec![1.0, 0.5, 0.5]);
        // Class 1: four others, one (item 2) predicted as 1.
        assert_eq!(m.specificity, vec![1.0, 0.75, 0.75]);
        assert_eq!(m.f1, vec![1.0, 0.5, 0.5]);
        assert_eq!(m.macro_f1, 2.0 / 3.0);
        assert_eq!(m.balanced_accuracy, 2.0 / 3.0);
        assert_eq!(m.auc[0], 1.0);
    }

    #[test]
    fn argmax_ties_go_to_the_first_class() {
        let m = MulticlassData::new(&[1, 0], &[vec![0.5, 0.5], vec![0.5, 0.5]])
            .unwrap()
            .metrics();
        assert_eq!(m.sensitivity, vec![1.0, 0.0]);
    }

    #[test]
    fn absent_class_leaves_its_auc_undefined_but_not_the_f1_mean() {
        let m = MulticlassData::new(
            &[0, 1, 0],
            &[vec![0.9, 0.2, 0.7], vec![0.1, 0.8, 0.3], vec![0.0; 3]],
        )
        .unwrap()
        .metrics();
        assert!(m.auc[2].is_nan() && m.macro_auc.is_nan());
        assert_eq!(m.macro_f1, 1.0);
        assert_eq!(m.balanced_accuracy, 1.0);
    }

    #[test]
    fn rejects_labels_outside_the_classes() {
        assert!(matches!(
            MulticlassData::new(&[0, 3], &[vec![0.5; 2], vec![0.5; 2]]),
            Err(MetricsError::Label { index: 1, .. })
        ));
        assert!(matches!(
            MulticlassData::new(&[0], &[vec![1.0]]),
            Err(MetricsError::TooFewClasses(1))
        ));
    }
}
