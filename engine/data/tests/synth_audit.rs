//! `engine synth` families fed to the audit: the audit reproduces the rates the generator
//! was given (within sampling error), the layouts read back whole, output is deterministic
//! for a seed, and no synthetic identity reaches the audit.

use std::collections::BTreeMap;
use std::path::Path;

use engine_core::manifest::{AttributeSource, Dataset, DatasetFormat, SplitBy, SplitSpec};
use engine_data::audit::{self, Audit};
use engine_data::salt::Salt;
use engine_data::synth::{self, ChestOptions, DermOptions, Family, WristOptions};

fn salt() -> Salt {
    Salt::from_bytes([3; 32])
}

fn synth_into(family: Family) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    synth::write(&family, &out).unwrap();
    (dir, out)
}

/// Whether `got` is within `z` standard errors of `p` for `n` draws.
fn within(got: f64, p: f64, n: usize, z: f64) -> bool {
    let se = (p * (1.0 - p) / n as f64).sqrt();
    (got - p).abs() <= z * se + 1e-9
}

fn chest_spec(root: &Path, split_file: bool) -> Dataset {
    let mut spec = Dataset::new(DatasetFormat::SiimAcr, root.display().to_string());
    spec.attributes.insert(
        "drain".into(),
        AttributeSource {
            file: "drains.csv".into(),
            id_column: "image_id".into(),
            column: None,
        },
    );
    spec.split = Some(SplitSpec {
        seed: 7,
        stratify: vec!["drain".into()],
        file: split_file.then(|| "split.csv".into()),
        ..SplitSpec::default()
    });
    spec
}

fn text_of(a: &Audit) -> String {
    serde_json::to_string(a).unwrap() + &audit::summary(a)
}

#[test]
fn chest_audit_reproduces_the_drain_rates_and_names_no_identity() {
    let (_tmp, root) = synth_into(Family::Chest(ChestOptions {
        n: 700,
        size: 40,
        neatx_n: 20,
        seed: 11,
        ..ChestOptions::default()
    }));
    let a = audit::run("siim", &chest_spec(&root, false), &root, &salt(), &[]).unwrap();
    assert_eq!(a.n_images, 700);
    assert_eq!(a.dataset.split_by, "patient");
    assert!(a.patients.leakage.shared.is_empty());
    assert!(a.excluded.is_empty(), "{:?}", a.excluded);
    assert!(a.problems.counts.is_empty(), "{:?}", a.problems);
    assert_eq!(a.images.channels.get("1"), Some(&700));
    assert_eq!(
        (a.images.sizes[0].width, a.images.sizes[0].height),
        (40, 40)
    );
    // Dev splits together: the generator's rates, within 3 standard errors.
    let (mut pos, mut pos_d, mut neg, mut neg_d) = (0, 0, 0, 0);
    for split in ["train", "val"] {
        let t = &a.cross_tabs["drain"][split][0];
        assert_eq!(t.class, "pneumothorax");
        assert_eq!(t.missing, 0);
        neg += t.table[0][0] + t.table[0][1];
        neg_d += t.table[0][1];
        pos += t.table[1][0] + t.table[1][1];
        pos_d += t.table[1][1];
    }
    let (p_pos, p_neg) = (pos_d as f64 / pos as f64, neg_d as f64 / neg as f64);
    assert!(
        within(p_pos, 0.6, pos, 3.0),
        "P(drain | pneumothorax) = {p_pos} over {pos}"
    );
    assert!(
        within(p_neg, 0.1, neg, 3.0),
        "P(drain | none) = {p_neg} over {neg}"
    );
    // A 0/1 attribute with these rates has AUC (1 + 0.6 - 0.1) / 2 = 0.75.
    let auc = a.cross_tabs["drain"]["train"][0].auc.unwrap();
    assert!((auc - 0.75).abs() < 0.08, "drain AUC {auc}");
    assert!(
        a.warnings
            .iter()
            .any(|w| w.contains("`drain`") && w.contains("shortcut")),
        "{:?}",
        a.warnings
    );
    // Masks for exactly the positive images.
    let train = &a.supervision.splits["train"];
    assert_eq!(a.supervision.kind, "masks");
    assert_eq!(train.masks, a.classes[1].train);
    // Prevalence near 0.25.
    let prevalence = a.classes[1].total as f64 / 700.0;
    assert!(
        within(prevalence, 0.25, 700, 3.0),
        "prevalence {prevalence}"
    );
    // Shares of the splits by patient, near 0.7 / 0.15 / 0.15 of patients.
    let groups: usize = ["train", "val", "test"]
        .iter()
        .map(|s| a.splits[*s].groups)
        .sum();
    assert_eq!(groups, a.patients.total);
    let test_share = a.splits["test"].groups as f64 / groups as f64;
    assert!((test_share - 0.15).abs() < 0.02, "test share {test_share}");
    // No synthetic identity or DICOM UID reaches the audit.
    let text = text_of(&a);
    assert!(!text.contains("SYNTH"), "a patient identity leaked");
    assert!(!text.contains("2.25."), "a DICOM UID leaked");
}

#[test]
fn chest_test_split_can_have_its_own_drain_rates() {
    let (_tmp, root) = synth_into(Family::Chest(ChestOptions {
        n: 900,
        size: 32,
        neatx_n: 0,
        seed: 5,
        test_fraction: 0.3,
        test_drain_given_positive: 0.3,
        test_drain_given_negative: 0.3,
        ..ChestOptions::default()
    }));
    // The generator's own files: drain rates inside and outside the fixed test split.
    let read = |name: &str| -> BTreeMap<String, String> {
        std::fs::read_to_string(root.join(name))
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(','))
            .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
            .collect()
    };
    let drains = read("drains.csv");
    let split = read("split.csv");
    let labels = read("train-rle.csv");
    let mut counts = BTreeMap::new();
    for (id, d) in &drains {
        let test = split.contains_key(id);
        let pos = labels[id] != "-1";
        let e = counts.entry((test, pos)).or_insert((0usize, 0usize));
        e.0 += 1;
        e.1 += usize::from(d == "1");
    }
    for ((test, pos), (n, d)) in &counts {
        let want = match (test, pos) {
            (false, true) => 0.6,
            (false, false) => 0.1,
            _ => 0.3,
        };
        assert!(
            within(*d as f64 / *n as f64, want, *n, 3.5),
            "test={test} positive={pos}: {d} of {n}"
        );
    }
    // Read with the split file, the test split is exactly the listed images.
    let a = audit::run("siim", &chest_spec(&root, true), &root, &salt(), &[]).unwrap();
    assert_eq!(a.splits["test"].images, split.len());
    assert!(a.patients.leakage.shared.is_empty());
}

#[test]
fn derm_audit_shows_isic_like_imbalance_and_lesion_groups() {
    let (_tmp, root) = synth_into(Family::Derm(DermOptions {
        n: 1200,
        seed: 2,
        size: 24,
        ..DermOptions::default()
    }));
    let mut spec = Dataset::new(DatasetFormat::Isic2019, root.display().to_string());
    spec.split = Some(SplitSpec {
        by: Some(SplitBy::Lesion),
        seed: 1,
        ..SplitSpec::default()
    });
    let a = audit::run("isic", &spec, &root, &salt(), &[]).unwrap();
    assert_eq!(a.n_images, 1200);
    // UNK has no images and is left out; the other eight keep ISIC's column order.
    assert_eq!(
        a.dataset.class_names,
        ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    );
    assert!(a.notes.iter().any(|n| n.contains("UNK")));
    let share =
        |name: &str| a.classes.iter().find(|c| c.name == name).unwrap().total as f64 / 1200.0;
    // ISIC 2019's shares: NV 50.8%, MEL 17.9%, DF 0.94%, VASC 1.0% (lesions, so a wider band).
    assert!(within(share("NV"), 0.508, 1200, 4.0), "NV {}", share("NV"));
    assert!(
        within(share("MEL"), 0.178, 1200, 4.0),
        "MEL {}",
        share("MEL")
    );
    assert!(share("DF") < 0.025 && share("VASC") < 0.025);
    assert_eq!(a.patients.by, "lesion");
    assert!(a.patients.max_images >= 2, "some lesions are imaged twice");
    assert!(a.patients.leakage.shared.is_empty());
    assert_eq!(a.images.channels.get("3"), Some(&1200));
    assert!(
        a.warnings.iter().any(|w| w.contains("imbalance")),
        "{:?}",
        a.warnings
    );
}

#[test]
fn wrist_audit_finds_the_weak_pool() {
    let (_tmp, root) = synth_into(Family::Wrist(WristOptions {
        n: 800,
        seed: 3,
        size: 32,
        box_fraction: 0.05,
        ..WristOptions::default()
    }));
    let spec = Dataset::new(DatasetFormat::Yolo, root.display().to_string());
    let a = audit::run("wrist", &spec, &root, &salt(), &[]).unwrap();
    assert_eq!(a.n_images, 800);
    assert_eq!(a.dataset.class_names, ["no_fracture", "fracture"]);
    let total_boxed: usize = a.supervision.splits.values().map(|s| s.boxed).sum();
    assert!(
        within(total_boxed as f64 / 800.0, 0.05, 800, 3.5),
        "boxed {total_boxed}"
    );
    let positives = a.classes[1].total as f64 / 800.0;
    assert!(within(positives, 0.5, 800, 4.0), "positives {positives}");
    assert_eq!(a.supervision.kind, "boxes");
    assert!(
        a.supervision
            .summary
            .contains("have only image-level labels"),
        "{}",
        a.supervision.summary
    );
    assert!(
        a.warnings.iter().any(|w| w.starts_with("weak supervision")),
        "{:?}",
        a.warnings
    );
    assert_eq!(a.dataset.split_by, "patient");
}

#[test]
fn a_wrist_test_split_is_fixed_in_split_csv_and_fully_boxed() {
    let options = WristOptions {
        n: 800,
        seed: 3,
        size: 32,
        box_fraction: 0.05,
        test_fraction: 0.2,
        ..WristOptions::default()
    };
    let (_tmp, root) = synth_into(Family::Wrist(options.clone()));
    let mut spec = Dataset::new(DatasetFormat::Yolo, root.display().to_string());
    spec.split = Some(SplitSpec {
        seed: 7,
        file: Some("split.csv".into()),
        ..SplitSpec::default()
    });
    let a = audit::run("wrist", &spec, &root, &salt(), &[]).unwrap();
    // A fifth of the patients, and only they, are the test split; each test image is boxed.
    let test = &a.splits["test"];
    assert!(
        within(
            test.groups as f64 / a.patients.total as f64,
            0.2,
            a.patients.total,
            4.0
        ),
        "{} test patients of {}",
        test.groups,
        a.patients.total
    );
    let listed = std::fs::read_to_string(root.join("split.csv")).unwrap();
    assert_eq!(listed.lines().count() - 1, test.images, "{listed}");
    let sup = &a.supervision.splits["test"];
    assert_eq!(sup.boxed, sup.images, "every test image keeps its boxes");
    assert_eq!(sup.image_level_only, 0);
    // Outside it, boxes stay as sparse as asked.
    let train = &a.supervision.splits["train"];
    assert!(
        within(
            train.boxed as f64 / train.images as f64,
            0.05,
            train.images,
            3.5
        ),
        "{} of {} training images boxed",
        train.boxed,
        train.images
    );
    // Without a test split no split.csv is written.
    let (_tmp2, plain) = synth_into(Family::Wrist(WristOptions {
        test_fraction: 0.0,
        ..options
    }));
    assert!(!plain.join("split.csv").exists());
}

/// The mean grey level inside the fracture boxes of a wrist set: the dark fracture line
/// pulls it down.
fn grey_in_boxes(root: &Path) -> f64 {
    let mut total = 0.0;
    let mut boxes = 0usize;
    for entry in std::fs::read_dir(root.join("labels")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let img =
            engine_data::image::decode(&root.join("images").join(format!("{stem}.png"))).unwrap();
        let (w, h) = (img.width as f64, img.height as f64);
        let grey = |x: usize, y: usize| f64::from(img.pixels[y * img.width as usize + x]) / 255.0;
        for line in text.lines() {
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap())
                .collect();
            let (x0, x1) = (
                ((v[0] - v[2] / 2.0) * w) as usize,
                ((v[0] + v[2] / 2.0) * w) as usize,
            );
            let (y0, y1) = (
                ((v[1] - v[3] / 2.0) * h) as usize,
                ((v[1] + v[3] / 2.0) * h) as usize,
            );
            let inside: Vec<f64> = (y0..y1.min(img.height as usize))
                .flat_map(|y| (x0..x1.min(img.width as usize)).map(move |x| (x, y)))
                .map(|(x, y)| grey(x, y))
                .collect();
            total += inside.iter().sum::<f64>() / inside.len() as f64;
            boxes += 1;
        }
    }
    total / boxes as f64
}

#[test]
fn wrist_difficulty_makes_fractures_subtler() {
    let options = WristOptions {
        n: 80,
        seed: 4,
        size: 64,
        ..WristOptions::default()
    };
    let (_a, easy) = synth_into(Family::Wrist(options.clone()));
    let (_b, hard) = synth_into(Family::Wrist(WristOptions {
        difficulty: 1.0,
        ..options
    }));
    let (easy, hard) = (grey_in_boxes(&easy), grey_in_boxes(&hard));
    assert!(
        hard > easy + 0.06,
        "grey level {hard} in the boxes at difficulty 1 against {easy}"
    );
}

/// The share of the melanoma images of a derm set that show a blue-grey veil (pixels
/// clearly bluer than red), one of the obvious melanoma cues.
fn melanomas_with_a_veil(root: &Path) -> (usize, f64) {
    let gt = std::fs::read_to_string(root.join("ISIC_2019_Training_GroundTruth.csv")).unwrap();
    let mel: Vec<String> = gt
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1] == "1.0").then(|| f[0].to_owned())
        })
        .collect();
    let veiled = mel
        .iter()
        .filter(|id| {
            let img = engine_data::image::decode(
                &root
                    .join("ISIC_2019_Training_Input")
                    .join(format!("{id}.jpg")),
            )
            .unwrap();
            img.pixels
                .chunks(3)
                .filter(|p| i32::from(p[2]) > i32::from(p[0]) + 25)
                .count()
                >= 3
        })
        .count();
    (mel.len(), veiled as f64 / mel.len() as f64)
}

#[test]
fn derm_difficulty_takes_the_obvious_cues_from_melanomas() {
    let options = DermOptions {
        n: 600,
        seed: 5,
        size: 32,
        ..DermOptions::default()
    };
    let (_a, easy) = synth_into(Family::Derm(options.clone()));
    let (_b, hard) = synth_into(Family::Derm(DermOptions {
        difficulty: 0.8,
        ..options
    }));
    let (n_easy, veil_easy) = melanomas_with_a_veil(&easy);
    let (n_hard, veil_hard) = melanomas_with_a_veil(&hard);
    assert!(
        n_easy > 50 && n_hard > 50,
        "{n_easy} and {n_hard} melanomas"
    );
    // About 60% of melanomas have a veil; at difficulty 0.8, about a fifth of that.
    assert!(veil_easy > 0.4, "{veil_easy}");
    assert!(
        veil_hard < 0.5 * veil_easy,
        "{veil_hard} against {veil_easy}"
    );
    // The class balance is the generator's either way.
    let spec = Dataset::new(DatasetFormat::Isic2019, hard.display().to_string());
    let a = audit::run("isic", &spec, &hard, &salt(), &[]).unwrap();
    let nv = a.classes.iter().find(|c| c.name == "NV").unwrap().total as f64 / 600.0;
    assert!(within(nv, 12875.0 / 25331.0, 600, 4.0), "NV share {nv}");
}

fn tree_digest(root: &Path) -> BTreeMap<String, String> {
    walkdir(root)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (
                rel,
                blake3::hash(&std::fs::read(&p).unwrap())
                    .to_hex()
                    .to_string(),
            )
        })
        .collect()
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_same_seed_writes_the_same_files() {
    for family in [
        Family::Chest(ChestOptions {
            n: 20,
            size: 24,
            neatx_n: 5,
            seed: 9,
            ..ChestOptions::default()
        }),
        Family::Derm(DermOptions {
            n: 20,
            size: 24,
            seed: 9,
            ..DermOptions::default()
        }),
        Family::Wrist(WristOptions {
            n: 20,
            size: 24,
            seed: 9,
            box_fraction: 0.5,
            ..WristOptions::default()
        }),
    ] {
        let (_a, ra) = synth_into(family.clone());
        let (_b, rb) = synth_into(family.clone());
        assert_eq!(tree_digest(&ra), tree_digest(&rb), "{family:?}");
        let other = match family {
            Family::Chest(o) => Family::Chest(ChestOptions { seed: 10, ..o }),
            Family::Derm(o) => Family::Derm(DermOptions { seed: 10, ..o }),
            Family::Wrist(o) => Family::Wrist(WristOptions { seed: 10, ..o }),
        };
        let (_c, rc) = synth_into(other);
        assert_ne!(tree_digest(&ra), tree_digest(&rc));
    }
}

#[test]
fn synth_refuses_a_non_empty_directory_and_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let e = synth::write(
        &Family::Derm(DermOptions {
            n: 5,
            ..DermOptions::default()
        }),
        dir.path(),
    )
    .unwrap_err();
    assert!(e.usage && e.message.contains("not empty"), "{e}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine"
    );
    let out = dir.path().join("x");
    let e = synth::write(
        &Family::Wrist(WristOptions {
            box_fraction: 1.5,
            ..WristOptions::default()
        }),
        &out,
    )
    .unwrap_err();
    assert!(e.usage && e.message.contains("--box-fraction"), "{e}");
    let e = synth::write(
        &Family::Derm(DermOptions {
            n: 0,
            ..DermOptions::default()
        }),
        &out,
    )
    .unwrap_err();
    assert!(e.usage, "{e}");
    assert!(!out.exists(), "nothing is left behind");
}
