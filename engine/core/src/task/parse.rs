//! The rule-based parser: a request in words becomes a TaskSpec, with a question for the
//! clinician wherever the words leave something open. No network, no model; the words it
//! knows live in `vocab.yaml`.

use std::ops::Range;

use crate::task::spec::{
    Comparison, Constraint, ErrorPreference, Metric, Modality, Objective, TaskKind, TaskSpec,
};
use crate::task::text::{Hit, clause_of, contains, find, find_plain, match_at, sentences};
use crate::task::vocab::{Vocab, vocab};

/// Tokens that may stand between the items of a list of classes.
const LIST_GLUE: [&str; 13] = [
    ",", "and", "or", "&", "/", "(", ")", "the", "a", "an", "vs", "versus", "plus",
];
/// Number words for counts of classes ("the eight usual groups").
const COUNT_WORDS: [&str; 11] = [
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
];
/// Nouns after a count that mean classes.
const CLASS_NOUNS: [&str; 8] = [
    "class",
    "group",
    "category",
    "categorie",
    "type",
    "diagnos",
    "diagnostic",
    "kind",
];

/// Parses a clinician's request into a TaskSpec. Never fails: what the words leave open
/// becomes a question in `clarifications`.
pub fn parse_request(text: &str) -> TaskSpec {
    Parser::new(vocab(), text).run()
}

/// A label mention in a sentence.
#[derive(Clone, Debug)]
struct Mention {
    sentence: usize,
    start: usize,
    end: usize,
    label: String,
    negated: bool,
}

struct Parser<'v> {
    v: &'v Vocab,
    sentences: Vec<Vec<String>>,
    clarifications: Vec<String>,
}

impl<'v> Parser<'v> {
    fn new(v: &'v Vocab, text: &str) -> Parser<'v> {
        Parser {
            v,
            sentences: sentences(text),
            clarifications: Vec::new(),
        }
    }

    fn ask(&mut self, question: impl Into<String>) {
        let q = question.into();
        if !self.clarifications.contains(&q) {
            self.clarifications.push(q);
        }
    }

    fn any(&self, phrases: &[Vec<String>]) -> bool {
        self.sentences.iter().any(|s| contains(s, phrases))
    }

    fn run(mut self) -> TaskSpec {
        if self.sentences.is_empty() {
            self.ask("What should the model do? The request is empty.");
        }
        let modality = self.modality();
        let mentions = self.mentions();
        let mentioned = distinct(mentions.iter().filter(|m| !m.negated).map(|m| &m.label));
        let list = self.class_list(&mentions);
        let set = self.named_class_set(modality);
        let count = self.class_count();
        let detection = self.any(&self.v.detection_words);
        let multiclass_cue = self.any(&self.v.multiclass_words) || count.is_some_and(|n| n > 2);

        let mut spec = TaskSpec {
            task: TaskKind::BinaryClassification,
            modality,
            target: None,
            classes: Vec::new(),
            positive_class: None,
            negative_class: None,
            priority_class: None,
            error_preference: ErrorPreference::Balanced,
            objective: None,
            constraints: Vec::new(),
            confounders: Vec::new(),
            clarifications: Vec::new(),
        };

        if detection {
            spec.task = TaskKind::Detection;
            spec.classes = if list.len() >= 2 {
                list.clone()
            } else {
                mentioned
                    .iter()
                    .filter(|l| !self.v.benign.contains(l))
                    .cloned()
                    .collect()
            };
            if spec.classes.is_empty() {
                self.ask("What should the model mark on the images (for example fractures)?");
            }
            spec.target = self.target_for(&spec.classes);
        } else if list.len() >= 3 || mentioned.len() >= 3 {
            spec.task = TaskKind::MulticlassClassification;
            // The listed classes first, then any other class the request names.
            spec.classes = distinct(list.iter().chain(mentioned.iter()));
            spec.target = self.target_for(&spec.classes);
        } else if let Some(set) = set.filter(|_| multiclass_cue || mentioned.is_empty()) {
            let set = &self.v.class_sets[set];
            spec.task = TaskKind::MulticlassClassification;
            spec.classes = set.classes.clone();
            spec.target = Some(set.name.clone());
            if mentioned.is_empty() {
                let names = set.classes.join(", ");
                self.ask(format!(
                    "The request names no classes; are these the ones you mean: {names}?"
                ));
            }
        } else if !mentioned.is_empty() {
            spec.task = TaskKind::BinaryClassification;
            if multiclass_cue && mentioned.len() < 3 && count.is_some_and(|n| n > 2) {
                self.ask("Which classes should the model tell apart? The request counts more classes than it names.");
            }
            self.binary_classes(&mentioned, &mentions, &mut spec);
        } else {
            self.ask("What finding or diagnosis should the model predict?");
            if multiclass_cue {
                spec.task = TaskKind::MulticlassClassification;
                self.ask("Which classes should the model tell apart?");
            } else {
                self.ask("Should the model answer yes/no for one finding, choose among several classes, or mark findings with boxes?");
            }
        }
        if let Some(n) = count
            && !spec.classes.is_empty()
            && spec.classes.len() != n
        {
            self.ask(format!(
                "The request speaks of {n} classes but names {}: {}. Which are they?",
                spec.classes.len(),
                spec.classes.join(", ")
            ));
        }

        spec.priority_class = self.priority(&spec, &mentions);
        spec.error_preference = self.error_preference();
        let (objective, constraints) = self.numbers(&spec);
        spec.constraints = constraints;
        spec.objective = Some(objective.unwrap_or_else(|| default_objective(&spec)));
        spec.confounders = self.confounders(spec.target.as_deref());
        spec.clarifications = self.clarifications;
        spec
    }

    /// The modality: a named one, or an X-ray word with a body part.
    fn modality(&mut self) -> Modality {
        let mut found: Vec<Modality> = Vec::new();
        for s in &self.sentences {
            for hit in find(s, &self.v.modalities) {
                if !found.contains(&hit.value) {
                    found.push(hit.value);
                }
            }
        }
        if found.is_empty() && self.any(&self.v.xray_words) {
            for s in &self.sentences {
                for hit in find(s, &self.v.xray_body_parts) {
                    if !found.contains(&hit.value) {
                        found.push(hit.value);
                    }
                }
            }
            if found.is_empty() {
                self.ask("Which body part are the X-rays of (for example chest or wrist)?");
                return Modality::Other;
            }
        }
        match found.as_slice() {
            [] => {
                self.ask("Which kind of images will the model see (for example dermoscopy, chest X-ray, wrist radiograph)?");
                Modality::Other
            }
            [one] => *one,
            [first, ..] => {
                let names: Vec<&str> = found.iter().map(|m| m.as_str()).collect();
                self.ask(format!(
                    "The request names several kinds of images ({}); which one will the model see?",
                    names.join(", ")
                ));
                *first
            }
        }
    }

    /// Every label mention, with negation ("not melanoma", "ignore effusions and nodules").
    fn mentions(&self) -> Vec<Mention> {
        let mut out = Vec::new();
        for (si, s) in self.sentences.iter().enumerate() {
            let negations: Vec<Range<usize>> = find_plain(s, &self.v.negation_words)
                .into_iter()
                .filter(|r| {
                    // "whether or not" and "not only" are no negation of what follows.
                    let word = s[r.start].as_str();
                    !(word == "not"
                        && (r.start > 0 && s[r.start - 1] == "or"
                            || s.get(r.start + 1).is_some_and(|w| w == "only")))
                })
                .collect();
            let hits = find(s, &self.v.labels);
            let mut previous: Option<&Hit<String>> = None;
            let mut previous_negated = false;
            for hit in &hits {
                let direct = negations.iter().any(|n| {
                    n.end <= hit.start
                        && hit.start - n.end <= 2
                        && !s[n.end..hit.start].iter().any(|w| w == ",")
                });
                let listed = previous.is_some_and(|p| glue_only(&s[p.end..hit.start]));
                let negated = direct || (listed && previous_negated);
                out.push(Mention {
                    sentence: si,
                    start: hit.start,
                    end: hit.end,
                    label: hit.value.clone(),
                    negated,
                });
                previous = Some(hit);
                previous_negated = negated;
            }
        }
        out
    }

    /// The longest list of three or more classes joined only by commas, "and", "or".
    fn class_list(&self, mentions: &[Mention]) -> Vec<String> {
        let mut best: Vec<String> = Vec::new();
        let mut run: Vec<&Mention> = Vec::new();
        let consider = |run: &[&Mention], best: &mut Vec<String>| {
            let labels = distinct(run.iter().map(|m| &m.label));
            if labels.len() >= 3 && labels.len() > best.len() {
                *best = labels;
            }
        };
        for m in mentions.iter().filter(|m| !m.negated) {
            let joined = run.last().is_some_and(|p| {
                p.sentence == m.sentence && glue_only(&self.sentences[m.sentence][p.end..m.start])
            });
            if !joined {
                consider(&run, &mut best);
                run.clear();
            }
            run.push(m);
        }
        consider(&run, &mut best);
        best
    }

    /// A named group of classes ("the usual diagnostic groups"), preferring one of the modality.
    fn named_class_set(&self, modality: Modality) -> Option<usize> {
        let mut hits: Vec<usize> = self
            .sentences
            .iter()
            .flat_map(|s| find(s, &self.v.class_set_words))
            .map(|h| h.value)
            .collect();
        hits.sort_by_key(|&i| self.v.class_sets[i].modality != modality);
        hits.into_iter()
            .find(|&i| modality == Modality::Other || self.v.class_sets[i].modality == modality)
    }

    /// A count of classes ("eight groups", "3 classes").
    fn class_count(&self) -> Option<usize> {
        for s in &self.sentences {
            for (i, w) in s.iter().enumerate() {
                let n = COUNT_WORDS
                    .iter()
                    .position(|c| c == w)
                    .map(|p| p + 2)
                    .or_else(|| w.parse::<usize>().ok().filter(|n| (2..=50).contains(n)));
                let Some(n) = n else { continue };
                let noun_follows = s
                    .iter()
                    .skip(i + 1)
                    .take(3)
                    .any(|w| CLASS_NOUNS.iter().any(|c| w.starts_with(c)));
                if noun_follows {
                    return Some(n);
                }
            }
        }
        None
    }

    /// The target that names a set of classes: the one class, or the group holding them all.
    fn target_for(&mut self, classes: &[String]) -> Option<String> {
        match classes {
            [] => None,
            [one] => Some(one.clone()),
            _ => {
                let set = self
                    .v
                    .class_sets
                    .iter()
                    .find(|set| classes.iter().all(|c| set.classes.contains(c)));
                if set.is_none() {
                    self.ask("What should the target be called (the name of what the classes describe, for example lesion_diagnosis)?");
                }
                set.map(|s| s.name.clone())
            }
        }
    }

    /// Positive and negative class of a binary task.
    fn binary_classes(&mut self, mentioned: &[String], mentions: &[Mention], spec: &mut TaskSpec) {
        let benign = |l: &String| self.v.benign.contains(l);
        let (positive, negative) = match mentioned {
            [one] => (one.clone(), None),
            [a, b, ..] => {
                if benign(a) != benign(b) {
                    if benign(a) {
                        (b.clone(), Some(a.clone()))
                    } else {
                        (a.clone(), Some(b.clone()))
                    }
                } else {
                    let prioritised = self.prioritised(mentions);
                    match prioritised.iter().find(|p| *p == a || *p == b) {
                        Some(p) if p == b => (b.clone(), Some(a.clone())),
                        Some(_) => (a.clone(), Some(b.clone())),
                        None => {
                            self.ask(format!(
                                "Which of {a} and {b} should count as the positive class?"
                            ));
                            (a.clone(), Some(b.clone()))
                        }
                    }
                }
            }
            [] => return,
        };
        spec.target = Some(positive.clone());
        spec.positive_class = Some(positive);
        spec.negative_class = negative;
    }

    /// In each sentence that speaks of priority or of the cost of an error, the label named
    /// nearest to those words.
    fn prioritised(&self, mentions: &[Mention]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (si, s) in self.sentences.iter().enumerate() {
            let mut cues = find_plain(s, &self.v.priority_words);
            if cues.is_empty() {
                cues.extend(find_plain(s, &self.v.false_negative_words));
                cues.extend(find_plain(s, &self.v.false_positive_words));
            }
            let distance = |m: &Mention| {
                cues.iter()
                    .map(|c| {
                        if m.end <= c.start {
                            c.start - m.end
                        } else {
                            m.start.saturating_sub(c.end)
                        }
                    })
                    .min()
                    .unwrap_or(usize::MAX)
            };
            let nearest = mentions
                .iter()
                .filter(|m| m.sentence == si && !m.negated && !cues.is_empty())
                .min_by_key(|m| distance(m));
            if let Some(m) = nearest
                && !out.contains(&m.label)
            {
                out.push(m.label.clone());
            }
        }
        out
    }

    /// The class whose errors matter most.
    fn priority(&mut self, spec: &TaskSpec, mentions: &[Mention]) -> Option<String> {
        let candidates: Vec<String> = self
            .prioritised(mentions)
            .into_iter()
            .filter(|l| spec.classes.contains(l) || spec.positive_class.as_ref() == Some(l))
            .collect();
        match spec.task {
            TaskKind::BinaryClassification => spec.positive_class.clone(),
            TaskKind::Detection if spec.classes.len() == 1 => spec.classes.first().cloned(),
            _ => match candidates.as_slice() {
                [one] => Some(one.clone()),
                [first, ..] => {
                    self.ask(format!(
                        "Which class matters most: {}?",
                        candidates.join(" or ")
                    ));
                    Some(first.clone())
                }
                [] => {
                    if self.any(&self.v.priority_words) {
                        self.ask("Which class matters most? The request says one does but does not name it.");
                    }
                    None
                }
            },
        }
    }

    /// Which error is worse, from the cost words in each clause.
    fn error_preference(&mut self) -> ErrorPreference {
        if self.any(&self.v.balanced_words) {
            return ErrorPreference::Balanced;
        }
        let (mut fn_votes, mut fp_votes) = (0, 0);
        for s in &self.sentences {
            let fns = find_plain(s, &self.v.false_negative_words);
            let fps = find_plain(s, &self.v.false_positive_words);
            let mut vote = |r: &Range<usize>, is_fn: bool| {
                let clause = clause_of(s, r.start);
                let words = &s[clause.clone()];
                // "rather X than Y": X is tolerated, Y is the worry.
                let rather = words.iter().position(|w| w == "rather");
                let than = words.iter().position(|w| w == "than");
                let tolerated = if let (Some(_), Some(t)) = (rather, than) {
                    r.start < clause.start + t
                } else {
                    find_plain(words, &self.v.tolerance_words).iter().any(|t| {
                        let before = &words[t.start.saturating_sub(2)..t.start];
                        !before
                            .iter()
                            .any(|w| w == "not" || w == "never" || w == "isnt" || w == "no")
                    })
                };
                if is_fn != tolerated {
                    fn_votes += 1;
                } else {
                    fp_votes += 1;
                }
            };
            for r in &fns {
                vote(r, true);
            }
            for r in &fps {
                vote(r, false);
            }
        }
        match (fn_votes > 0, fp_votes > 0) {
            (true, false) => ErrorPreference::MinimizeFalseNegatives,
            (false, true) => ErrorPreference::MinimizeFalsePositives,
            (true, true) => {
                self.ask("The request worries about both missed findings and false alarms; which is worse?");
                ErrorPreference::Balanced
            }
            (false, false) => ErrorPreference::Balanced,
        }
    }

    /// Operating points ("at 80% specificity"), constraints ("at least 90% sensitivity") and
    /// objectives named outright ("optimise AUC").
    fn numbers(&mut self, spec: &TaskSpec) -> (Option<Objective>, Vec<Constraint>) {
        let mut objective: Option<Objective> = None;
        let mut constraints: Vec<Constraint> = Vec::new();
        let mut unclear: Vec<String> = Vec::new();
        let class = match spec.task {
            TaskKind::MulticlassClassification => spec.priority_class.clone(),
            _ => None,
        };
        for s in &self.sentences {
            let metrics = find(s, &self.v.metrics);
            let mut used: Vec<usize> = Vec::new();
            for (i, w) in s.iter().enumerate() {
                let Ok(raw) = w.parse::<f64>() else { continue };
                let percent = s.get(i + 1).is_some_and(|n| n == "%" || n == "percent")
                    || (s.get(i + 1).is_some_and(|n| n == "per")
                        && s.get(i + 2).is_some_and(|n| n == "cent"));
                let value = if percent || raw > 1.0 {
                    raw / 100.0
                } else {
                    raw
                };
                if !(0.0..=1.0).contains(&value) || !raw.is_finite() {
                    continue;
                }
                let after =
                    i + 1 + usize::from(percent) + usize::from(percent && s[i + 1] == "per");
                let clause = clause_of(s, i);
                // The metric right after the number, else the nearest one before it in the
                // clause, else the nearest after it.
                let metric =
                    metrics
                        .iter()
                        .enumerate()
                        .find(|(_, m)| m.start == after)
                        .or_else(|| {
                            metrics.iter().enumerate().rfind(|(_, m)| {
                                m.end <= i && m.start >= clause.start && i - m.end <= 5
                            })
                        })
                        .or_else(|| {
                            metrics.iter().enumerate().find(|(_, m)| {
                                m.start > i && m.start < clause.end && m.start - i <= 4
                            })
                        });
                let Some((mi, m)) = metric else { continue };
                used.push(mi);
                let before = &s[clause.start.max(i.saturating_sub(4))..i];
                let between = if m.end <= i { &s[m.end..i] } else { before };
                let after_words = &s[after.min(s.len())..(after + 2).min(s.len())];
                let has = |phrases: &[Vec<String>], words: &[String]| contains(words, phrases);
                let ge = has(&self.v.at_least_words, between)
                    || has(&self.v.at_least_words, before)
                    || after_words.first().is_some_and(|w| w == "or")
                        && has(&self.v.at_least_words, after_words);
                let le = has(&self.v.at_most_words, between)
                    || has(&self.v.at_most_words, before)
                    || after_words.first().is_some_and(|w| w == "or")
                        && has(&self.v.at_most_words, after_words);
                let at = i > 0 && match_any_ending_at(s, i, &self.v.operating_point_words)
                    || m.end <= i
                        && m.start > 0
                        && match_any_ending_at(s, m.start, &self.v.operating_point_words)
                    || m.end <= i
                        && s[m.start.saturating_sub(2)..m.start]
                            .iter()
                            .any(|w| w == "at");
                let required = contains(&s[clause.clone()], &self.v.requirement_words);
                let op = if ge {
                    Some(Comparison::AtLeast)
                } else if le {
                    Some(Comparison::AtMost)
                } else if at {
                    None
                } else if required {
                    Some(Comparison::AtLeast)
                } else {
                    unclear.push(w.clone());
                    continue;
                };
                match (op, m.value) {
                    (Some(op), metric) => constraints.push(Constraint {
                        metric,
                        op,
                        value: round(value),
                    }),
                    (None, Metric::Specificity) => {
                        objective = Some(Objective {
                            metric: Metric::SensitivityAtSpecificity,
                            class: class.clone(),
                            at_specificity: Some(round(value)),
                            at_sensitivity: None,
                        });
                    }
                    (None, Metric::Sensitivity) => {
                        objective = Some(Objective {
                            metric: Metric::SpecificityAtSensitivity,
                            class: class.clone(),
                            at_specificity: None,
                            at_sensitivity: Some(round(value)),
                        });
                    }
                    (None, _) => unclear.push(w.clone()),
                }
            }
            if objective.is_none() {
                for cue in find_plain(s, &self.v.objective_words) {
                    let named = metrics.iter().enumerate().find(|(mi, m)| {
                        !used.contains(mi) && m.start >= cue.end && m.start - cue.end <= 3
                    });
                    if let Some((_, m)) = named {
                        let metric = match (m.value, spec.task) {
                            (Metric::Auc, TaskKind::MulticlassClassification) => Metric::MacroAuc,
                            (Metric::F1, TaskKind::MulticlassClassification) => Metric::MacroF1,
                            (metric, _) => metric,
                        };
                        objective = Some(Objective::metric(metric));
                        break;
                    }
                }
            }
        }
        for n in unclear {
            self.ask(format!(
                "What does the number {n} refer to: a minimum, a maximum, or the operating point?"
            ));
        }
        (objective, constraints)
    }

    /// Things the model must not rely on.
    fn confounders(&self, target: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.sentences {
            let negations = find_plain(s, &self.v.negation_words);
            let shortcut = contains(s, &self.v.shortcut_words);
            for hit in find(s, &self.v.confounders) {
                let needs_context = self.v.confounders_need_context.contains(&hit.value);
                let negated = negations
                    .iter()
                    .any(|n| n.end <= hit.start && hit.start - n.end <= 1 && s[n.start] != "not");
                if (needs_context && !shortcut)
                    || negated
                    || target == Some(hit.value.as_str())
                    || out.contains(&hit.value)
                {
                    continue;
                }
                out.push(hit.value);
            }
        }
        out
    }
}

/// Whether one of the phrases ends right before token `end`.
fn match_any_ending_at(words: &[String], end: usize, phrases: &[Vec<String>]) -> bool {
    phrases
        .iter()
        .any(|p| end >= p.len() && match_at(words, end - p.len(), p) == Some(end))
}

/// Whether tokens are only list glue (commas, "and", "or").
fn glue_only(words: &[String]) -> bool {
    words.iter().all(|w| LIST_GLUE.contains(&w.as_str()))
}

/// Labels in order of first appearance, each once.
fn distinct<'a>(labels: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in labels {
        if !out.contains(l) {
            out.push(l.clone());
        }
    }
    out
}

/// Rounds to four decimals, so that 80% is 0.8 and not 0.8000000000000002.
fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The objective when the request names none: AUC when both errors cost the same, else the
/// sensitivity (or specificity) at a fixed operating point.
fn default_objective(spec: &TaskSpec) -> Objective {
    let class = spec.priority_class.clone();
    match (spec.task, spec.error_preference) {
        (TaskKind::Detection, _) => Objective::metric(Metric::Map50),
        (TaskKind::BinaryClassification, ErrorPreference::Balanced) => {
            Objective::metric(Metric::Auc)
        }
        (TaskKind::MulticlassClassification, ErrorPreference::Balanced) => {
            Objective::metric(Metric::MacroAuc)
        }
        (TaskKind::MulticlassClassification, _) if class.is_none() => {
            Objective::metric(Metric::MacroAuc)
        }
        (task, ErrorPreference::MinimizeFalseNegatives) => Objective {
            metric: Metric::SensitivityAtSpecificity,
            class: class.filter(|_| task == TaskKind::MulticlassClassification),
            at_specificity: Some(0.8),
            at_sensitivity: None,
        },
        (task, ErrorPreference::MinimizeFalsePositives) => Objective {
            metric: Metric::SpecificityAtSensitivity,
            class: class.filter(|_| task == TaskKind::MulticlassClassification),
            at_specificity: None,
            at_sensitivity: Some(0.9),
        },
    }
}
