//! The parser's vocabulary (`vocab.yaml`, embedded at build time), read once and tokenised.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::task::spec::{Metric, Modality};
use crate::task::text::tokenize;

/// The vocabulary file as written.
const VOCAB_YAML: &str = include_str!("vocab.yaml");

/// A phrase as tokens.
pub type Phrase = Vec<String>;

/// The vocabulary file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVocab {
    modalities: BTreeMap<Modality, Vec<String>>,
    xray_words: Vec<String>,
    xray_body_parts: BTreeMap<Modality, Vec<String>>,
    labels: BTreeMap<String, RawLabel>,
    class_sets: BTreeMap<String, RawClassSet>,
    confounders: BTreeMap<String, Vec<String>>,
    confounders_need_context: Vec<String>,
    shortcut_words: Vec<String>,
    detection_words: Vec<String>,
    multiclass_words: Vec<String>,
    priority_words: Vec<String>,
    false_negative_words: Vec<String>,
    false_positive_words: Vec<String>,
    tolerance_words: Vec<String>,
    balanced_words: Vec<String>,
    negation_words: Vec<String>,
    metrics: BTreeMap<Metric, Vec<String>>,
    objective_words: Vec<String>,
    at_least_words: Vec<String>,
    at_most_words: Vec<String>,
    operating_point_words: Vec<String>,
    requirement_words: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    words: Vec<String>,
    #[serde(default)]
    benign: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassSet {
    modality: Modality,
    words: Vec<String>,
    classes: Vec<String>,
}

/// A named group of classes.
#[derive(Debug)]
pub struct ClassSet {
    /// The target name the group gives (e.g. `lesion_diagnosis`).
    pub name: String,
    /// The modality it belongs to.
    pub modality: Modality,
    /// The classes, in their usual order.
    pub classes: Vec<String>,
}

/// The vocabulary, tokenised: phrases paired with what they mean.
#[derive(Debug, Default)]
pub struct Vocab {
    pub modalities: Vec<(Phrase, Modality)>,
    pub xray_words: Vec<Phrase>,
    pub xray_body_parts: Vec<(Phrase, Modality)>,
    pub labels: Vec<(Phrase, String)>,
    pub benign: Vec<String>,
    pub class_sets: Vec<ClassSet>,
    pub class_set_words: Vec<(Phrase, usize)>,
    pub confounders: Vec<(Phrase, String)>,
    pub confounders_need_context: Vec<String>,
    pub shortcut_words: Vec<Phrase>,
    pub detection_words: Vec<Phrase>,
    pub multiclass_words: Vec<Phrase>,
    pub priority_words: Vec<Phrase>,
    pub false_negative_words: Vec<Phrase>,
    pub false_positive_words: Vec<Phrase>,
    pub tolerance_words: Vec<Phrase>,
    pub balanced_words: Vec<Phrase>,
    pub negation_words: Vec<Phrase>,
    pub metrics: Vec<(Phrase, Metric)>,
    pub objective_words: Vec<Phrase>,
    pub at_least_words: Vec<Phrase>,
    pub at_most_words: Vec<Phrase>,
    pub operating_point_words: Vec<Phrase>,
    pub requirement_words: Vec<Phrase>,
}

fn phrases(words: &[String]) -> Vec<Phrase> {
    words
        .iter()
        .map(|w| tokenize(w))
        .filter(|p| !p.is_empty())
        .collect()
}

fn tagged<T: Clone>(map: &BTreeMap<T, Vec<String>>) -> Vec<(Phrase, T)> {
    map.iter()
        .flat_map(|(k, words)| phrases(words).into_iter().map(move |p| (p, k.clone())))
        .collect()
}

impl Vocab {
    /// Reads and tokenises the embedded vocabulary.
    pub fn load() -> Result<Vocab, serde_norway::Error> {
        let raw: RawVocab = serde_norway::from_str(VOCAB_YAML)?;
        let labels = raw
            .labels
            .iter()
            .flat_map(|(name, l)| phrases(&l.words).into_iter().map(|p| (p, name.clone())))
            .collect();
        let benign = raw
            .labels
            .iter()
            .filter(|(_, l)| l.benign)
            .map(|(name, _)| name.clone())
            .collect();
        let mut class_sets = Vec::new();
        let mut class_set_words = Vec::new();
        for (i, (name, set)) in raw.class_sets.into_iter().enumerate() {
            class_set_words.extend(phrases(&set.words).into_iter().map(|p| (p, i)));
            class_sets.push(ClassSet {
                name,
                modality: set.modality,
                classes: set.classes,
            });
        }
        Ok(Vocab {
            modalities: tagged(&raw.modalities),
            xray_words: phrases(&raw.xray_words),
            xray_body_parts: tagged(&raw.xray_body_parts),
            labels,
            benign,
            class_sets,
            class_set_words,
            confounders: tagged(&raw.confounders),
            confounders_need_context: raw.confounders_need_context,
            shortcut_words: phrases(&raw.shortcut_words),
            detection_words: phrases(&raw.detection_words),
            multiclass_words: phrases(&raw.multiclass_words),
            priority_words: phrases(&raw.priority_words),
            false_negative_words: phrases(&raw.false_negative_words),
            false_positive_words: phrases(&raw.false_positive_words),
            tolerance_words: phrases(&raw.tolerance_words),
            balanced_words: phrases(&raw.balanced_words),
            negation_words: phrases(&raw.negation_words),
            metrics: tagged(&raw.metrics),
            objective_words: phrases(&raw.objective_words),
            at_least_words: phrases(&raw.at_least_words),
            at_most_words: phrases(&raw.at_most_words),
            operating_point_words: phrases(&raw.operating_point_words),
            requirement_words: phrases(&raw.requirement_words),
        })
    }
}

/// The vocabulary, read on first use. A vocabulary that fails to read (a test guards against
/// it) leaves the parser with no words rather than panicking.
pub fn vocab() -> &'static Vocab {
    static VOCAB: OnceLock<Vocab> = OnceLock::new();
    VOCAB.get_or_init(|| Vocab::load().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_reads() {
        let v = Vocab::load().unwrap();
        assert!(!v.labels.is_empty() && !v.modalities.is_empty());
        for set in &v.class_sets {
            for class in &set.classes {
                assert!(
                    v.labels.iter().any(|(_, name)| name == class),
                    "class set {} names {class}, which is not a label",
                    set.name
                );
            }
        }
    }
}
