//! The data audit: what a clinician and the developer loop need to know about a dataset
//! before training on it. Counts per class and split, groups per split and the leakage
//! check, image sizes and channels, exact duplicates (across splits too), the supervision
//! structure, a cross-tab of every attribute against the label with the attribute's own AUC,
//! the excluded images and the problems found, and warnings in plain words.
//!
//! Every image is decoded once; one that cannot be is excluded from its split (the split of
//! every other image is unchanged). Patients appear only as salted hashes; DICOM image ids
//! only as salted hashes too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use engine_core::metrics::roc_auc;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::item::{Catalog, Item, Problem, ProblemKind};
use crate::split::{Leakage, Partition, Split};

/// Presence threshold for attributes given as probabilities.
pub const PRESENT_AT: f64 = 0.5;

/// The audit, as written to `audit.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// What was audited and how it was split.
    pub dataset: DatasetInfo,
    /// Usable images, all splits together.
    pub n_images: usize,
    /// Images per class and split.
    pub classes: Vec<ClassCount>,
    /// Images, groups and classes per split.
    pub splits: BTreeMap<String, SplitInfo>,
    /// Groups (patients, lesions) and the leakage check.
    pub patients: Groups,
    /// Image sizes and channels.
    pub images: Images,
    /// Exact duplicates by content.
    pub duplicates: Duplicates,
    /// Boxes, masks or image-level labels, per split.
    pub supervision: Supervision,
    /// Each attribute against the label, per open split.
    pub cross_tabs: BTreeMap<String, BTreeMap<String, Vec<CrossTab>>>,
    /// Images left out because they cannot be decoded.
    pub excluded: Vec<Excluded>,
    /// Rows and files that did not fit, by kind, with the first of each.
    pub problems: Problems,
    /// Facts about the layout.
    pub notes: Vec<String>,
    /// What to worry about, in plain words.
    pub warnings: Vec<String>,
}

/// What was audited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The dataset's name in the manifest (or its directory).
    pub name: String,
    /// Its layout.
    pub format: String,
    /// What the label says.
    pub target: String,
    /// The classes; with two, the second is the positive one.
    pub class_names: Vec<String>,
    /// The declared attributes.
    pub attributes: Vec<String>,
    /// What stays together in a split.
    pub split_by: String,
    /// The split's seed.
    pub seed: u64,
    /// The validation share asked for.
    pub val: f64,
    /// The test share asked for.
    pub test: f64,
}

/// One class's images per split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassCount {
    /// The class.
    pub name: String,
    /// Images in training.
    pub train: usize,
    /// Images in validation.
    pub val: usize,
    /// Images in test.
    pub test: usize,
    /// All of them.
    pub total: usize,
}

/// One split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// Images.
    pub images: usize,
    /// Groups (patients, lesions or images).
    pub groups: usize,
    /// Images per class.
    pub per_class: BTreeMap<String, usize>,
}

/// Groups and leakage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Groups {
    /// What a group is: `patient`, `lesion` or `image`.
    pub by: String,
    /// Groups in all.
    pub total: usize,
    /// Fewest images of one group.
    pub min_images: usize,
    /// Median images per group.
    pub median_images: f64,
    /// Most images of one group.
    pub max_images: usize,
    /// Groups (hashed) found in more than one split; must be empty.
    pub leakage: Leakage,
}

/// Sizes and channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Images {
    /// The most common sizes, with counts.
    pub sizes: Vec<SizeCount>,
    /// Distinct sizes in all.
    pub distinct_sizes: usize,
    /// Images by channel count (`"1"` grey, `"3"` colour).
    pub channels: BTreeMap<String, usize>,
}

/// Images of one size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizeCount {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Images of this size.
    pub count: usize,
}

/// Exact duplicates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    /// Sets of two or more images with identical content.
    pub sets: usize,
    /// Images that are a copy of an earlier one (all sets together).
    pub copies: usize,
    /// Sets whose images sit in more than one split (leakage).
    pub across_splits: usize,
    /// Up to ten sets, as the training and validation images in them (test images are not named).
    pub examples: Vec<Vec<String>>,
}

/// The supervision structure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Supervision {
    /// `boxes` (some images boxed), `masks` (segmentation masks), or `image-level`.
    pub kind: String,
    /// Per split.
    pub splits: BTreeMap<String, SupervisionCounts>,
    /// The training split in a sentence.
    pub summary: String,
}

/// Supervision of one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupervisionCounts {
    /// Images.
    pub images: usize,
    /// Images with boxes (possibly none on them: boxed and found negative).
    pub boxed: usize,
    /// Images with an image-level label only.
    pub image_level_only: usize,
    /// Boxes in all.
    pub boxes: usize,
    /// Images with a segmentation mask.
    pub masks: usize,
}

/// An attribute against one class (binary labels: against the positive class).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossTab {
    /// The class ("positive").
    pub class: String,
    /// Images with a value for the attribute.
    pub n: usize,
    /// Images without one.
    pub missing: usize,
    /// `[[attribute absent, present] among other classes, [absent, present] in the class]`.
    pub table: [[usize; 2]; 2],
    /// P(attribute | class).
    pub p_given_positive: Option<f64>,
    /// P(attribute | other classes).
    pub p_given_negative: Option<f64>,
    /// AUC of the attribute's value alone as a predictor of the class.
    pub auc: Option<f64>,
}

/// An excluded image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    /// The image (path, or hashed id for DICOM).
    pub image: String,
    /// Why.
    pub reason: String,
}

/// Problems by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problems {
    /// How many of each kind.
    pub counts: BTreeMap<String, usize>,
    /// The first twenty of each kind.
    pub first: Vec<ProblemOut>,
}

/// A problem as written out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProblemOut {
    /// Its kind.
    pub kind: String,
    /// The image or row.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
}

/// What each image turned out to be.
struct Inspected {
    split: Split,
    width: u32,
    height: u32,
    channels: u8,
    hash: [u8; 32],
}

/// Audits a split dataset: decodes every image (excluding, from its split, any that cannot
/// be decoded) and describes the rest. `name` names the dataset in the output.
pub fn audit(partition: &mut Partition, name: &str) -> Result<Audit, DataError> {
    let root = partition.catalog().root.clone();
    let all: Vec<(Split, &Item)> = Split::ALL
        .iter()
        .flat_map(|s| partition.items(*s).iter().map(move |i| (*s, i)))
        .collect();
    let results = crate::par::map(&all, |(split, item)| inspect(&root, *split, item));
    let mut excluded = Vec::new();
    let mut bad_ids = BTreeSet::new();
    let mut inspected: BTreeMap<String, Inspected> = BTreeMap::new();
    for ((_, item), r) in all.iter().zip(results) {
        match r {
            Ok(info) => {
                inspected.insert(item.id.clone(), info);
            }
            Err(reason) => {
                excluded.push(Excluded {
                    image: partition.catalog().shown_item(item),
                    reason,
                });
                bad_ids.insert(item.id.clone());
            }
        }
    }
    partition.exclude(&bad_ids);
    if partition.is_empty() {
        return Err(DataError::new(format!(
            "dataset `{name}` has no usable image: all {} could not be decoded (first: {}: {})",
            excluded.len(),
            excluded.first().map_or("", |e| e.image.as_str()),
            excluded.first().map_or("", |e| e.reason.as_str()),
        ))
        .hint("check that the files are complete PNG, JPEG or DICOM images"));
    }
    let cat = partition.catalog();
    let mut problems: Vec<Problem> = cat.problems.clone();
    for e in &excluded {
        problems.push(Problem {
            kind: ProblemKind::Unreadable,
            subject: e.image.clone(),
            detail: e.reason.clone(),
        });
    }

    let counts: BTreeMap<Split, crate::SplitCounts> = Split::ALL
        .iter()
        .map(|s| (*s, partition.counts(*s)))
        .collect();
    let classes: Vec<ClassCount> = cat
        .classes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let (tr, va, te) = (
                counts[&Split::Train].per_class[k],
                counts[&Split::Val].per_class[k],
                counts[&Split::Test].per_class[k],
            );
            ClassCount {
                name: c.clone(),
                train: tr,
                val: va,
                test: te,
                total: tr + va + te,
            }
        })
        .collect();
    let splits: BTreeMap<String, SplitInfo> = counts
        .iter()
        .map(|(s, c)| {
            (
                s.as_str().to_owned(),
                SplitInfo {
                    images: c.images,
                    groups: c.groups,
                    per_class: cat
                        .classes
                        .iter()
                        .cloned()
                        .zip(c.per_class.iter().copied())
                        .collect(),
                },
            )
        })
        .collect();
    let n_images: usize = counts.values().map(|c| c.images).sum();

    // Groups.
    let mut group_sizes: BTreeMap<String, usize> = BTreeMap::new();
    for s in Split::ALL {
        for i in partition.items(s) {
            *group_sizes
                .entry(crate::split::group_key(partition.by(), i))
                .or_default() += 1;
        }
    }
    let mut sizes: Vec<usize> = group_sizes.values().copied().collect();
    sizes.sort_unstable();
    let median = if sizes.is_empty() {
        0.0
    } else if sizes.len() % 2 == 1 {
        sizes[sizes.len() / 2] as f64
    } else {
        (sizes[sizes.len() / 2 - 1] + sizes[sizes.len() / 2]) as f64 / 2.0
    };
    let patients = Groups {
        by: partition.by().as_str().to_owned(),
        total: sizes.len(),
        min_images: sizes.first().copied().unwrap_or(0),
        median_images: median,
        max_images: sizes.last().copied().unwrap_or(0),
        leakage: partition.leakage().clone(),
    };

    // Sizes, channels, duplicates.
    let mut by_size: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    let mut channels: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_hash: BTreeMap<[u8; 32], Vec<(Split, String)>> = BTreeMap::new();
    for s in Split::ALL {
        for item in partition.items(s) {
            if let Some(info) = inspected.get(&item.id) {
                *by_size.entry((info.width, info.height)).or_default() += 1;
                *channels.entry(info.channels.to_string()).or_default() += 1;
                by_hash
                    .entry(info.hash)
                    .or_default()
                    .push((info.split, cat.shown_item(item)));
            }
        }
    }
    let mut size_list: Vec<SizeCount> = by_size
        .iter()
        .map(|((w, h), c)| SizeCount {
            width: *w,
            height: *h,
            count: *c,
        })
        .collect();
    size_list.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then((a.width, a.height).cmp(&(b.width, b.height)))
    });
    let distinct_sizes = size_list.len();
    size_list.truncate(10);
    let dup_sets: Vec<&Vec<(Split, String)>> = by_hash.values().filter(|v| v.len() > 1).collect();
    let duplicates = Duplicates {
        sets: dup_sets.len(),
        copies: dup_sets.iter().map(|v| v.len() - 1).sum(),
        across_splits: dup_sets
            .iter()
            .filter(|v| v.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>().len() > 1)
            .count(),
        examples: dup_sets
            .iter()
            .take(10)
            .map(|v| {
                v.iter()
                    .filter(|(s, _)| *s != Split::Test)
                    .map(|(_, n)| n.clone())
                    .collect()
            })
            .collect(),
    };

    let supervision = supervision(cat, partition);
    let cross_tabs = cross_tabs(cat, partition);

    let mut problem_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut first: Vec<ProblemOut> = Vec::new();
    let mut per_kind: BTreeMap<ProblemKind, usize> = BTreeMap::new();
    for p in &problems {
        let kind = serde_json::to_value(p.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *problem_counts.entry(kind.clone()).or_default() += 1;
        let seen = per_kind.entry(p.kind).or_default();
        *seen += 1;
        if *seen <= 20 {
            first.push(ProblemOut {
                kind,
                subject: p.subject.clone(),
                detail: p.detail.clone(),
            });
        }
    }

    let mut audit = Audit {
        dataset: DatasetInfo {
            name: name.to_owned(),
            format: cat.format.as_str().to_owned(),
            target: cat.target.clone(),
            class_names: cat.classes.clone(),
            attributes: cat.attributes.clone(),
            split_by: partition.by().as_str().to_owned(),
            seed: partition.spec().seed,
            val: partition.spec().val,
            test: partition.spec().test,
        },
        n_images,
        classes,
        splits,
        patients,
        images: Images {
            sizes: size_list,
            distinct_sizes,
            channels,
        },
        duplicates,
        supervision,
        cross_tabs,
        excluded,
        problems: Problems {
            counts: problem_counts,
            first,
        },
        notes: cat.notes.clone(),
        warnings: Vec::new(),
    };
    audit.warnings = warnings(&audit, cat, &per_kind);
    Ok(audit)
}

/// Reads, splits and audits the dataset `name` declared by `spec` at `root`; attributes in
/// `attribute_files` (`attributes.csv` written by stages) are audited too.
pub fn run(
    name: &str,
    spec: &engine_core::manifest::Dataset,
    root: &Path,
    salt: &crate::salt::Salt,
    attribute_files: &[std::path::PathBuf],
) -> Result<Audit, DataError> {
    let mut catalog = crate::read(spec, root, salt)?;
    for f in attribute_files {
        crate::read::attach_attribute_table(&mut catalog, f)?;
    }
    let mut partition = catalog.partition(&spec.split.clone().unwrap_or_default())?;
    audit(&mut partition, name)
}

/// Writes `audit.json` and `summary.md` into `dir`.
pub fn write(audit: &Audit, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(audit).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("audit.json"), json + "\n")?;
    std::fs::write(dir.join("summary.md"), summary(audit))
}

/// Guesses the layout of a dataset directory from the files in it.
pub fn detect_format(root: &Path) -> Option<engine_core::manifest::DatasetFormat> {
    use engine_core::manifest::DatasetFormat as F;
    if root.join(crate::read::siim::RLE_CSV).is_file() {
        return Some(F::SiimAcr);
    }
    if root.join(crate::read::isic::GROUND_TRUTH).is_file() {
        return Some(F::Isic2019);
    }
    if root.join("images").is_dir()
        && (root.join("labels").is_dir()
            || root.join("classes.txt").is_file()
            || root.join("data.yaml").is_file())
    {
        return Some(F::Yolo);
    }
    let class_dirs = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| {
            !crate::read::list_files(root, &e.path(), crate::read::IMAGE_EXTENSIONS).is_empty()
        })
        .count();
    (class_dirs >= 2).then_some(F::FolderPerClass)
}

fn inspect(root: &Path, split: Split, item: &Item) -> Result<Inspected, String> {
    let path = root.join(&item.path);
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("cannot be read: {}", crate::table::io_reason(&e)))?;
    let hash = *blake3::hash(&bytes).as_bytes();
    let decoded = if crate::read::has_extension(&path, &["dcm", "dicom"]) {
        crate::dicom::decode(&path)?
    } else {
        crate::image::decode_bytes(&bytes)?
    };
    Ok(Inspected {
        split,
        width: decoded.width,
        height: decoded.height,
        channels: decoded.channels,
        hash,
    })
}

fn supervision(cat: &Catalog, partition: &Partition) -> Supervision {
    let mut splits = BTreeMap::new();
    for s in Split::ALL {
        let items = partition.items(s);
        let boxed = items.iter().filter(|i| i.boxes.is_some()).count();
        splits.insert(
            s.as_str().to_owned(),
            SupervisionCounts {
                images: items.len(),
                boxed,
                image_level_only: items.len() - boxed,
                boxes: items
                    .iter()
                    .map(|i| i.boxes.as_ref().map_or(0, Vec::len))
                    .sum(),
                masks: items.iter().filter(|i| i.has_mask).count(),
            },
        );
    }
    let train = &splits["train"];
    let (kind, summary) = if cat.format == engine_core::manifest::DatasetFormat::Yolo {
        (
            "boxes",
            format!(
                "{} of {} training images have boxes ({} boxes); {} have only image-level labels",
                fmt_n(train.boxed),
                fmt_n(train.images),
                fmt_n(train.boxes),
                fmt_n(train.image_level_only)
            ),
        )
    } else if cat.format == engine_core::manifest::DatasetFormat::SiimAcr {
        (
            "masks",
            format!(
                "{} of {} training images have a segmentation mask (every positive one)",
                fmt_n(train.masks),
                fmt_n(train.images)
            ),
        )
    } else {
        (
            "image-level",
            format!(
                "all {} training images have image-level labels only",
                fmt_n(train.images)
            ),
        )
    };
    Supervision {
        kind: kind.into(),
        splits,
        summary,
    }
}

fn cross_tabs(
    cat: &Catalog,
    partition: &Partition,
) -> BTreeMap<String, BTreeMap<String, Vec<CrossTab>>> {
    let mut out = BTreeMap::new();
    for attr in &cat.attributes {
        let mut per_split = BTreeMap::new();
        for s in [Split::Train, Split::Val] {
            let items = partition.items(s);
            let classes: Vec<usize> = if cat.is_binary() {
                vec![1]
            } else {
                (0..cat.classes.len()).collect()
            };
            let tabs = classes
                .into_iter()
                .map(|k| cross_tab(items, attr, k, &cat.classes[k]))
                .collect();
            per_split.insert(s.as_str().to_owned(), tabs);
        }
        out.insert(attr.clone(), per_split);
    }
    out
}

fn cross_tab(items: &[Item], attr: &str, class: usize, name: &str) -> CrossTab {
    let mut table = [[0usize; 2]; 2];
    let mut labels = Vec::new();
    let mut scores = Vec::new();
    let mut missing = 0;
    for i in items {
        match i.attributes.get(attr) {
            Some(v) => {
                let pos = i.class == class;
                table[usize::from(pos)][usize::from(*v >= PRESENT_AT)] += 1;
                labels.push(pos);
                scores.push(*v);
            }
            None => missing += 1,
        }
    }
    let share = |row: [usize; 2]| {
        let n = row[0] + row[1];
        (n > 0).then(|| row[1] as f64 / n as f64)
    };
    CrossTab {
        class: name.to_owned(),
        n: labels.len(),
        missing,
        table,
        p_given_positive: share(table[1]),
        p_given_negative: share(table[0]),
        auc: roc_auc(&labels, &scores).ok(),
    }
}

fn warnings(a: &Audit, cat: &Catalog, problems: &BTreeMap<ProblemKind, usize>) -> Vec<String> {
    let mut w = Vec::new();
    for (attr, splits) in &a.cross_tabs {
        let Some(tabs) = splits.get("train") else {
            continue;
        };
        for t in tabs {
            let (Some(pp), Some(pn)) = (t.p_given_positive, t.p_given_negative) else {
                continue;
            };
            let auc = t.auc.unwrap_or(0.5);
            if (pp - pn).abs() >= 0.1 || (auc - 0.5).abs() >= 0.1 {
                let (other, shortcut) = if cat.is_binary() {
                    (
                        "the others".to_owned(),
                        format!(
                            "A model can learn `{attr}` as a shortcut for {}: debias against it, and check the confound at evaluation.",
                            cat.target
                        ),
                    )
                } else {
                    (
                        "the other classes".to_owned(),
                        format!("A model can learn `{attr}` as a shortcut for {}.", t.class),
                    )
                };
                w.push(format!(
                    "`{attr}` is present in {} of {} training images but in {} of {other}; on its own it predicts {} with AUC {:.3}. {shortcut}",
                    pct(pp),
                    t.class,
                    pct(pn),
                    t.class,
                    auc
                ));
            }
            if t.missing > 0 {
                w.push(format!(
                    "`{attr}` is unknown for {} training images",
                    fmt_n(t.missing)
                ));
            }
        }
    }
    let train: Vec<(String, usize)> = a
        .classes
        .iter()
        .map(|c| (c.name.clone(), c.train))
        .collect();
    if let (Some(min), Some(max)) = (
        train.iter().min_by_key(|c| c.1),
        train.iter().max_by_key(|c| c.1),
    ) && max.1 > 0
        && (min.1 as f64) < 0.1 * max.1 as f64
    {
        w.push(format!(
            "strong class imbalance: `{}` has {} training images against {} of `{}` ({}); weight the loss or balance the sampler",
            min.0,
            fmt_n(min.1),
            fmt_n(max.1),
            max.0,
            pct(min.1 as f64 / max.1 as f64)
        ));
    }
    for c in &a.classes {
        if c.val < 5 || c.test < 5 {
            w.push(format!(
                "`{}` has only {} validation and {} test images: its metrics will be very uncertain",
                c.name, c.val, c.test
            ));
        }
    }
    let tr = &a.supervision.splits["train"];
    if a.supervision.kind == "boxes" && tr.images > 0 && (tr.boxed as f64) < 0.5 * tr.images as f64
    {
        w.push(format!(
            "weak supervision: only {} of {} training images ({}) have boxes; {} have only image-level labels. A detector trained on the boxed images alone ignores them: pseudo-label the image-level pool with a teacher",
            fmt_n(tr.boxed),
            fmt_n(tr.images),
            pct(tr.boxed as f64 / tr.images as f64),
            fmt_n(tr.image_level_only)
        ));
    }
    if a.dataset.split_by == "image" {
        w.push("no patient or lesion ids: images were split one by one, so images of one patient may sit in different splits".into());
    }
    if !a.patients.leakage.shared.is_empty() {
        w.push(format!(
            "leakage: {} {} appear in more than one split",
            a.patients.leakage.shared.len(),
            if a.patients.leakage.shared.len() == 1 {
                "group"
            } else {
                "groups"
            }
        ));
    }
    if a.duplicates.across_splits > 0 {
        w.push(format!(
            "{} sets of identical images span splits: the same image in training and evaluation inflates results; remove the copies",
            fmt_n(a.duplicates.across_splits)
        ));
    } else if a.duplicates.sets > 0 {
        w.push(format!(
            "{} sets of identical images within splits",
            fmt_n(a.duplicates.sets)
        ));
    }
    if !a.excluded.is_empty() {
        w.push(format!(
            "{} images cannot be decoded and are excluded",
            fmt_n(a.excluded.len())
        ));
    }
    for (kind, n) in problems {
        if *kind != ProblemKind::Unreadable {
            w.push(format!("{}: {}", kind.describe(), fmt_n(*n)));
        }
    }
    if a.images.distinct_sizes > 1 {
        w.push(format!(
            "images come in {} sizes; they are resized for training",
            a.images.distinct_sizes
        ));
    }
    w
}

/// The audit in a few lines of Markdown, for people.
pub fn summary(a: &Audit) -> String {
    let mut s = String::new();
    let d = &a.dataset;
    s.push_str(&format!(
        "# Data audit: `{}` ({}), target `{}`\n\n",
        d.name, d.format, d.target
    ));
    let sp = |k: &str| a.splits.get(k).map_or(0, |x| x.images);
    s.push_str(&format!(
        "{} images of {} {}s, split by {} (seed {}): train {}, val {}, test {} (sealed).\n\n",
        fmt_n(a.n_images),
        fmt_n(a.patients.total),
        a.patients.by,
        a.patients.by,
        d.seed,
        fmt_n(sp("train")),
        fmt_n(sp("val")),
        fmt_n(sp("test"))
    ));
    s.push_str("| class | train | val | test | total | share |\n|---|---:|---:|---:|---:|---:|\n");
    for c in &a.classes {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            c.name,
            fmt_n(c.train),
            fmt_n(c.val),
            fmt_n(c.test),
            fmt_n(c.total),
            pct(c.total as f64 / a.n_images.max(1) as f64)
        ));
    }
    let sizes: Vec<String> = a
        .images
        .sizes
        .iter()
        .take(3)
        .map(|z| format!("{}x{} ({})", z.width, z.height, fmt_n(z.count)))
        .collect();
    let channels: Vec<String> = a
        .images
        .channels
        .iter()
        .map(|(c, n)| {
            format!(
                "{} with {c} channel{}",
                fmt_n(*n),
                if c == "1" { "" } else { "s" }
            )
        })
        .collect();
    s.push_str(&format!(
        "\nImages: {}; {}.\n",
        sizes.join(", "),
        channels.join(", ")
    ));
    s.push_str(&format!("Supervision: {}.\n", a.supervision.summary));
    s.push_str(&format!(
        "Groups: {} to {} images per {} (median {}); leakage check ({}): {}.\n",
        a.patients.min_images,
        a.patients.max_images,
        a.patients.by,
        a.patients.median_images,
        a.patients.leakage.checked.join(", "),
        if a.patients.leakage.shared.is_empty() {
            "none in two splits".to_owned()
        } else {
            format!("{} in two splits", a.patients.leakage.shared.len())
        }
    ));
    s.push_str(&format!(
        "Duplicates: {} sets of identical images, {} across splits.\n",
        a.duplicates.sets, a.duplicates.across_splits
    ));
    for (attr, splits) in &a.cross_tabs {
        if let Some(tabs) = splits.get("train") {
            for t in tabs {
                s.push_str(&format!(
                    "Attribute `{attr}` (training split): present in {} of `{}` images, {} of the others; AUC alone {}.\n",
                    t.p_given_positive.map_or("-".into(), pct),
                    t.class,
                    t.p_given_negative.map_or("-".into(), pct),
                    t.auc.map_or("-".into(), |v| format!("{v:.3}"))
                ));
            }
        }
    }
    if !a.excluded.is_empty() {
        s.push_str(&format!("\nExcluded ({}):\n", a.excluded.len()));
        for e in a.excluded.iter().take(10) {
            s.push_str(&format!("- {}: {}\n", e.image, e.reason));
        }
    }
    if !a.notes.is_empty() {
        s.push_str("\nNotes:\n");
        for n in &a.notes {
            s.push_str(&format!("- {n}\n"));
        }
    }
    if !a.warnings.is_empty() {
        s.push_str("\nWarnings:\n");
        for w in &a.warnings {
            s.push_str(&format!("- {w}\n"));
        }
    }
    s
}

/// A share as a percentage with one decimal.
fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A count with thousands separators.
pub fn fmt_n(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
