//! Splitting a catalog into training, validation and a sealed test set.
//!
//! Groups (patients, else lesions, else images) never straddle splits. Within each stratum
//! (the group's label, and its majority value of each attribute named in `stratify`) groups
//! are ordered by a seeded hash of their id and the first shares go to test and validation;
//! remainders carry from stratum to stratum, so the overall shares match the spec. The result
//! does not depend on file order, and adding a patient moves no other patient.
//!
//! The test split is sealed by type: [`Partition`] hands out training and validation items,
//! and test items only for a [`TestKey`], whose one constructor records the opening in the
//! workspace. A [`Partition`] cannot be made outside this crate except through
//! [`crate::Catalog::partition`].
//!
//! ```compile_fail
//! fn peek(p: &engine_data::Partition) -> usize {
//!     p.test.len() // the test items are private
//! }
//! ```
//!
//! ```compile_fail
//! // A key cannot be made without recording it.
//! let key = engine_data::TestKey { _private: () };
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use engine_core::manifest::{SplitBy, SplitSpec};
use serde::Serialize;

use crate::DataError;
use crate::item::{Catalog, Item, ProblemKind};
use crate::table::Table;

/// One of the three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// What models learn from.
    Train,
    /// What model selection and the developer loop read.
    Val,
    /// Held out, sealed until the final evaluation.
    Test,
}

impl Split {
    /// All three, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Aggregate counts of one split: all that is known of the test split before it is opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SplitCounts {
    /// Images.
    pub images: usize,
    /// Groups (patients, lesions or images, as split by).
    pub groups: usize,
    /// Images per class, in the catalog's class order.
    pub per_class: Vec<usize>,
}

/// How the leakage check went: groups found in more than one split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Leakage {
    /// What was checked: the split's groups, and patients when the split was by something else.
    pub checked: Vec<String>,
    /// Groups (hashed) found in more than one split.
    pub shared: Vec<String>,
}

/// A split dataset. Training and validation items are open; test items need a [`TestKey`].
#[derive(Debug)]
pub struct Partition {
    catalog: Catalog,
    by: SplitBy,
    spec: SplitSpec,
    train: Vec<Item>,
    val: Vec<Item>,
    test: Vec<Item>,
    leakage: Leakage,
}

/// Permission to read the test split. Its only constructor records, in the workspace, that
/// the test set was opened, by what and for which dataset.
#[derive(Debug)]
pub struct TestKey {
    _private: (),
}

impl TestKey {
    /// Records in `workspace/.engine/test-access.jsonl` that `purpose` opens the test split of
    /// `dataset`, and returns the key.
    pub fn record(workspace: &Path, dataset: &str, purpose: &str) -> std::io::Result<TestKey> {
        let dir = workspace.join(".engine");
        std::fs::create_dir_all(&dir)?;
        let line = serde_json::json!({
            "at": engine_core::clock::now_rfc3339(),
            "dataset": dataset,
            "purpose": purpose,
            "pid": std::process::id(),
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("test-access.jsonl"))?;
        writeln!(f, "{line}")?;
        f.sync_all()?;
        Ok(TestKey { _private: () })
    }
}

/// The group `item` belongs to when splitting by `by`: its patient or lesion, else the image
/// alone (marked, so that an image id never equals a patient id).
pub(crate) fn group_key(by: SplitBy, item: &Item) -> String {
    match by {
        SplitBy::Patient => item.patient.clone(),
        SplitBy::Lesion => item.lesion.clone(),
        SplitBy::Image => None,
    }
    .unwrap_or_else(|| format!("\0image:{}", item.id))
}

impl Catalog {
    /// Splits the catalog as `spec` says.
    pub fn partition(mut self, spec: &SplitSpec) -> Result<Partition, DataError> {
        let by = match spec.by {
            Some(SplitBy::Patient) if !self.has_patients() => {
                return Err(DataError::new(
                    "`split.by: patient`, but the dataset has no patient ids",
                )
                .hint("add a patient column (`patient_column`), or split by `lesion` or `image`"));
            }
            Some(SplitBy::Lesion) if !self.has_lesions() => {
                return Err(DataError::new("`split.by: lesion`, but the dataset has no lesion ids")
                    .hint("lesion ids come from ISIC's metadata CSV (`lesion_id`); split by `patient` or `image`"));
            }
            Some(by) => by,
            None if self.has_patients() => SplitBy::Patient,
            None if self.has_lesions() => SplitBy::Lesion,
            None => SplitBy::Image,
        };
        for attr in &spec.stratify {
            if !self.attributes.contains(attr) {
                return Err(DataError::new(format!(
                    "cannot stratify by `{attr}`, which is not an attribute of the dataset"
                )));
            }
        }
        let items = std::mem::take(&mut self.items);
        let group_of = |item: &Item| group_key(by, item);
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            groups.entry(group_of(item)).or_default().push(i);
        }

        // Splits fixed by a file.
        let mut fixed: BTreeMap<String, Split> = BTreeMap::new();
        let mut fixed_test = false;
        if let Some(file) = &spec.file {
            let table = Table::read(&self.root.join(file))?;
            let ic = table.require("image_id", "a split file names each image in `image_id`")?;
            let sc = table.require(
                "split",
                "a split file says `train`, `val` or `test` in `split`",
            )?;
            let index: BTreeMap<&str, usize> = items
                .iter()
                .enumerate()
                .map(|(i, it)| (it.id.as_str(), i))
                .collect();
            let mut per_group: BTreeMap<String, BTreeSet<Split>> = BTreeMap::new();
            for row in &table.rows {
                let id = Table::field(row, ic);
                let split = match Table::field(row, sc) {
                    "train" => Split::Train,
                    "val" => Split::Val,
                    "test" => Split::Test,
                    other => {
                        self.problem(
                            ProblemKind::BadRow,
                            table.at(row),
                            format!("split `{other}` is not train, val or test"),
                        );
                        continue;
                    }
                };
                let Some(&i) = index.get(id) else {
                    // Excluded or unknown images are simply not placed.
                    continue;
                };
                fixed_test |= split == Split::Test;
                per_group
                    .entry(group_of(&items[i]))
                    .or_default()
                    .insert(split);
            }
            for (g, splits) in per_group {
                if splits.len() > 1 {
                    let shown = self.shown_group(&g);
                    return Err(DataError::new(format!(
                        "{} puts images of one {} ({shown}) in {} splits",
                        table.file_name(),
                        by.as_str(),
                        splits.len()
                    ))
                    .hint(format!(
                        "all images of a {} must share a split",
                        by.as_str()
                    )));
                }
                if let Some(s) = splits.into_iter().next() {
                    fixed.insert(g, s);
                }
            }
        }

        // Strata of the groups still to place.
        let label_of = |members: &[usize]| -> String {
            if self.is_binary() {
                u8::from(members.iter().any(|i| items[*i].class == 1)).to_string()
            } else {
                let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
                for i in members {
                    *counts.entry(items[*i].class).or_default() += 1;
                }
                let best = counts
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                    .map_or(0, |(c, _)| *c);
                best.to_string()
            }
        };
        let attr_of = |members: &[usize], attr: &str| -> &'static str {
            let vals: Vec<f64> = members
                .iter()
                .filter_map(|i| items[*i].attributes.get(attr).copied())
                .collect();
            if vals.is_empty() {
                "?"
            } else if vals.iter().filter(|v| **v >= 0.5).count() * 2 >= vals.len() {
                "1"
            } else {
                "0"
            }
        };
        let mut strata: BTreeMap<String, Vec<(String, &String)>> = BTreeMap::new();
        for (g, members) in &groups {
            if fixed.contains_key(g) {
                continue;
            }
            let mut key = label_of(members);
            for attr in &spec.stratify {
                key.push('|');
                key.push_str(attr_of(members, attr));
            }
            let mut h = blake3::Hasher::new();
            h.update(&spec.seed.to_le_bytes());
            h.update(g.as_bytes());
            strata
                .entry(key)
                .or_default()
                .push((h.finalize().to_hex().to_string(), g));
        }
        let test_share = if fixed_test { 0.0 } else { spec.test };
        let (mut want_test, mut want_val) = (0.0f64, 0.0f64);
        let (mut got_test, mut got_val) = (0usize, 0usize);
        let mut assigned: BTreeMap<&String, Split> = BTreeMap::new();
        for (_, mut members) in strata {
            members.sort();
            let n = members.len();
            want_test += n as f64 * test_share;
            want_val += n as f64 * spec.val;
            let n_test = ((want_test.round() as usize).saturating_sub(got_test)).min(n);
            let n_val = ((want_val.round() as usize).saturating_sub(got_val)).min(n - n_test);
            got_test += n_test;
            got_val += n_val;
            for (k, (_, g)) in members.into_iter().enumerate() {
                let s = if k < n_test {
                    Split::Test
                } else if k < n_test + n_val {
                    Split::Val
                } else {
                    Split::Train
                };
                assigned.insert(g, s);
            }
        }
        let mut split_of_item = vec![Split::Train; items.len()];
        for (g, members) in &groups {
            let s = fixed
                .get(g)
                .copied()
                .or_else(|| assigned.get(g).copied())
                .unwrap_or(Split::Train);
            for i in members {
                split_of_item[*i] = s;
            }
        }

        // The leakage check: no group, and no patient, in two splits.
        let mut checked = vec![by.as_str().to_owned()];
        let mut seen: BTreeMap<String, BTreeSet<Split>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            seen.entry(group_of(item))
                .or_default()
                .insert(split_of_item[i]);
            if by != SplitBy::Patient
                && let Some(p) = &item.patient
            {
                seen.entry(format!("\0patient:{p}"))
                    .or_default()
                    .insert(split_of_item[i]);
            }
        }
        if by != SplitBy::Patient && self.has_patients() {
            checked.push("patient".into());
        }
        let shared: Vec<String> = seen
            .into_iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(g, _)| self.shown_group(g.trim_start_matches("\0patient:")))
            .collect();

        let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for (item, s) in items.into_iter().zip(split_of_item) {
            match s {
                Split::Train => train.push(item),
                Split::Val => val.push(item),
                Split::Test => test.push(item),
            }
        }
        Ok(Partition {
            catalog: self,
            by,
            spec: spec.clone(),
            train,
            val,
            test,
            leakage: Leakage { checked, shared },
        })
    }
}

impl Partition {
    /// The catalog's description (classes, attributes, problems); its items are in the splits.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// What groups were kept together.
    pub fn by(&self) -> SplitBy {
        self.by
    }

    /// The spec it was split by.
    pub fn spec(&self) -> &SplitSpec {
        &self.spec
    }

    /// The training items.
    pub fn train(&self) -> &[Item] {
        &self.train
    }

    /// The validation items.
    pub fn val(&self) -> &[Item] {
        &self.val
    }

    /// The test items, for whoever holds a key.
    pub fn test(&self, _key: &TestKey) -> &[Item] {
        &self.test
    }

    /// The result of the leakage check.
    pub fn leakage(&self) -> &Leakage {
        &self.leakage
    }

    /// Aggregate counts of a split (the test split included: counts reveal no item).
    pub fn counts(&self, split: Split) -> SplitCounts {
        let items = self.items(split);
        let mut per_class = vec![0; self.catalog.classes.len()];
        for i in items {
            per_class[i.class] += 1;
        }
        let groups: BTreeSet<String> = items.iter().map(|i| group_key(self.by, i)).collect();
        SplitCounts {
            images: items.len(),
            groups: groups.len(),
            per_class,
        }
    }

    /// Any split's items, for this crate's own aggregate checks (duplicates, decodability).
    pub(crate) fn items(&self, split: Split) -> &[Item] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Removes the items whose ids are in `ids` (images that cannot be decoded), from
    /// whichever split holds them. The split of every other item stays as it was.
    pub(crate) fn exclude(&mut self, ids: &BTreeSet<String>) {
        for v in [&mut self.train, &mut self.val, &mut self.test] {
            v.retain(|i| !ids.contains(&i.id));
        }
    }

    /// Whether no item is left in any split.
    pub fn is_empty(&self) -> bool {
        self.train.is_empty() && self.val.is_empty() && self.test.is_empty()
    }
}
