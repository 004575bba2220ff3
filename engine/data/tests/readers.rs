//! Every reader against small datasets written in the real on-disk layouts (PNG and JPEG
//! through the `image` crate, DICOM through `engine synth`), observed only through the
//! public API: the catalog's classes, notes and problems, the partition's training and
//! validation items, the test split through a recorded `TestKey`, and the audit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use engine_core::manifest::{AttributeSource, Dataset, DatasetFormat, SplitBy, SplitSpec};
use engine_data::salt::Salt;
use engine_data::synth::{ChestOptions, Family};
use engine_data::{Catalog, DataError, Partition, Problem, ProblemKind, Split, TestKey};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn salt() -> Salt {
    Salt::from_bytes([1; 32])
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn mkparent(path: &Path) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
}

/// An 8x8 grey PNG (or JPEG, by extension) whose pixels depend on `v`, so that images differ.
fn gray(path: &Path, v: u8) {
    mkparent(path);
    let mut img = image::GrayImage::new(8, 8);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Luma([v.wrapping_mul(7).wrapping_add((x * 8 + y) as u8)]);
    }
    img.save(path).unwrap();
}

/// An 8x8 RGB JPEG (ISIC's images are JPEGs).
fn rgb_jpg(path: &Path, v: u8) {
    mkparent(path);
    let mut img = image::RgbImage::new(8, 8);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([v, (x * 30) as u8, (y * 30) as u8]);
    }
    img.save(path).unwrap();
}

fn write(path: &Path, text: &str) {
    mkparent(path);
    std::fs::write(path, text).unwrap();
}

fn spec(format: DatasetFormat) -> Dataset {
    Dataset::new(format, ".")
}

fn csv_spec(labels: &str, target: &str) -> Dataset {
    let mut s = spec(DatasetFormat::CsvImages);
    s.labels = Some(labels.into());
    s.target = Some(target.into());
    s
}

fn read_ok(spec: &Dataset, root: &Path) -> Catalog {
    engine_data::read(spec, root, &salt()).unwrap_or_else(|e| panic!("{}", e.render()))
}

fn read_err(spec: &Dataset, root: &Path) -> DataError {
    match engine_data::read(spec, root, &salt()) {
        Ok(c) => panic!(
            "expected an error, got a catalog of {} items: {:?}",
            c.len(),
            c.problems
        ),
        Err(e) => e,
    }
}

fn problems(cat: &Catalog, kind: ProblemKind) -> Vec<&Problem> {
    cat.problems.iter().filter(|p| p.kind == kind).collect()
}

fn kinds(cat: &Catalog) -> BTreeMap<ProblemKind, usize> {
    let mut m = BTreeMap::new();
    for p in &cat.problems {
        *m.entry(p.kind).or_default() += 1;
    }
    m
}

fn partition(cat: Catalog) -> Partition {
    cat.partition(&SplitSpec::default())
        .unwrap_or_else(|e| panic!("{}", e.render()))
}

/// Every item's split, the test split opened with a key recorded in a scratch workspace.
fn split_of(p: &Partition) -> BTreeMap<String, Split> {
    let ws = tempdir();
    let key = TestKey::record(ws.path(), "test-dataset", "readers test").unwrap();
    let mut out = BTreeMap::new();
    for (s, items) in [
        (Split::Train, p.train()),
        (Split::Val, p.val()),
        (Split::Test, p.test(&key)),
    ] {
        for i in items {
            assert!(
                out.insert(i.id.clone(), s).is_none(),
                "{} in two splits",
                i.id
            );
        }
    }
    out
}

/// Every item of every split, the test split opened with a key recorded in a scratch
/// workspace.
fn all_items(p: &Partition) -> Vec<engine_data::Item> {
    let ws = tempdir();
    let key = TestKey::record(ws.path(), "test-dataset", "readers test").unwrap();
    p.train()
        .iter()
        .chain(p.val())
        .chain(p.test(&key))
        .cloned()
        .collect()
}

fn ids(items: &[engine_data::Item]) -> Vec<String> {
    items.iter().map(|i| i.id.clone()).collect()
}

/// Images per class over all three splits (counts reveal no test item).
fn per_class_total(p: &Partition) -> Vec<usize> {
    let mut total = vec![0; p.catalog().classes.len()];
    for s in Split::ALL {
        for (k, n) in p.counts(s).per_class.iter().enumerate() {
            total[k] += n;
        }
    }
    total
}

// ---------------------------------------------------------------------------------------
// folder-per-class
// ---------------------------------------------------------------------------------------

#[test]
fn folder_classes_come_from_directory_names() {
    let d = tempdir();
    let r = d.path();
    for i in 0..3 {
        gray(&r.join(format!("pneumonia/p{i}.png")), i);
        gray(&r.join(format!("normal/n{i}.jpg")), 10 + i);
    }
    // Images may sit in subdirectories of a class.
    gray(&r.join("normal/batch2/n9.png"), 42);
    let cat = read_ok(&spec(DatasetFormat::FolderPerClass), r);
    assert_eq!(cat.classes, ["normal", "pneumonia"]);
    assert_eq!(cat.len(), 7);
    assert!(cat.problems.is_empty(), "{:?}", cat.problems);
    let p = partition(cat);
    assert_eq!(per_class_total(&p), [4, 3]);
}

#[test]
fn folder_binary_puts_the_negative_class_first_even_when_it_sorts_last() {
    let d = tempdir();
    let r = d.path();
    for i in 0..2 {
        gray(&r.join(format!("effusion/e{i}.png")), i);
        gray(&r.join(format!("normal/n{i}.png")), 10 + i);
    }
    let cat = read_ok(&spec(DatasetFormat::FolderPerClass), r);
    assert_eq!(cat.classes, ["normal", "effusion"]);
    let p = partition(cat);
    // `effusion` images are the positive class (index 1).
    let all: Vec<&engine_data::Item> = p.train().iter().chain(p.val()).collect();
    for item in all {
        assert_eq!(
            item.class,
            usize::from(item.id.starts_with('e')),
            "{}",
            item.id
        );
    }
    assert_eq!(per_class_total(&p), [2, 2]);
}

#[test]
fn folder_image_in_the_root_is_an_image_without_label() {
    let d = tempdir();
    let r = d.path();
    gray(&r.join("normal/n0.png"), 1);
    gray(&r.join("pneumonia/p0.png"), 2);
    gray(&r.join("loose.png"), 3);
    let cat = read_ok(&spec(DatasetFormat::FolderPerClass), r);
    assert_eq!(cat.len(), 2);
    let p = problems(&cat, ProblemKind::ImageWithoutLabel);
    assert_eq!(p.len(), 1, "{:?}", cat.problems);
    assert_eq!(p[0].subject, "loose.png");
    assert_eq!(cat.problems.len(), 1);
}

#[test]
fn folder_with_fewer_than_two_classes_is_an_error() {
    let d = tempdir();
    let r = d.path();
    gray(&r.join("normal/n0.png"), 1);
    gray(&r.join("normal/n1.png"), 2);
    std::fs::create_dir_all(r.join("pneumonia")).unwrap(); // no images: not a class
    let e = read_err(&spec(DatasetFormat::FolderPerClass), r);
    assert!(e.message.contains("1 class directory"), "{}", e.message);
    assert!(e.message.contains("at least two"), "{}", e.message);

    let empty = tempdir();
    let e = read_err(&spec(DatasetFormat::FolderPerClass), empty.path());
    assert!(e.message.contains("0 class directories"), "{}", e.message);
}

// ---------------------------------------------------------------------------------------
// csv-images
// ---------------------------------------------------------------------------------------

#[test]
fn csv_binary_target_ids_without_extension_and_patients() {
    let d = tempdir();
    let r = d.path();
    let mut csv = String::from("image_id,pneumonia,patient_id\n");
    for i in 0..8u8 {
        gray(&r.join(format!("images/img{i}.png")), i);
        csv.push_str(&format!("img{i},{},P{}\n", i % 2, i / 2));
    }
    write(&r.join("labels.csv"), &csv);
    let cat = read_ok(&csv_spec("labels.csv", "pneumonia"), r);
    assert_eq!(cat.classes, ["no_pneumonia", "pneumonia"]);
    assert_eq!(cat.target, "pneumonia");
    assert_eq!(cat.len(), 8);
    assert!(cat.problems.is_empty(), "{:?}", cat.problems);
    assert!(cat.has_patients());
    let p = partition(cat);
    assert_eq!(p.by(), SplitBy::Patient);
    for item in p.train().iter().chain(p.val()) {
        let i: u8 = item.id.trim_start_matches("img").parse().unwrap();
        assert_eq!(
            item.patient.as_deref(),
            Some(format!("P{}", i / 2).as_str())
        );
        assert_eq!(item.class, usize::from(i % 2));
        assert_eq!(item.path, PathBuf::from(format!("images/img{i}.png")));
    }
    let groups: usize = Split::ALL.iter().map(|s| p.counts(*s).groups).sum();
    assert_eq!(groups, 4);
}

#[test]
fn csv_string_labels_are_sorted_classes() {
    let d = tempdir();
    let r = d.path();
    let mut csv = String::from("image,diagnosis\n");
    for (i, label) in ["nevus", "melanoma", "bcc", "nevus", "bcc"]
        .iter()
        .enumerate()
    {
        gray(&r.join(format!("x{i}.jpg")), i as u8);
        // `image` holds a path with its extension here.
        csv.push_str(&format!("x{i}.jpg,{label}\n"));
    }
    write(&r.join("labels.csv"), &csv);
    let cat = read_ok(&csv_spec("labels.csv", "diagnosis"), r);
    assert_eq!(cat.classes, ["bcc", "melanoma", "nevus"]);
    assert_eq!(cat.len(), 5);
    assert!(cat.problems.is_empty(), "{:?}", cat.problems);
    assert_eq!(per_class_total(&partition(cat)), [2, 1, 2]);
}

#[test]
fn csv_rows_and_images_that_do_not_match_are_problems() {
    let d = tempdir();
    let r = d.path();
    for i in 0..4u8 {
        gray(&r.join(format!("img{i}.png")), i);
    }
    gray(&r.join("unlisted.png"), 9);
    gray(&r.join("nolabel.png"), 10);
    write(
        &r.join("labels.csv"),
        "image_id,effusion\n\
         img0,1\n\
         img1,0\n\
         missing,1\n\
         img2,0\n\
         img3,1\n\
         nolabel,\n",
    );
    let cat = read_ok(&csv_spec("labels.csv", "effusion"), r);
    assert_eq!(cat.classes, ["no_effusion", "effusion"]);
    assert_eq!(cat.len(), 4);

    let lwi = problems(&cat, ProblemKind::LabelWithoutImage);
    assert_eq!(lwi.len(), 1, "{:?}", cat.problems);
    assert_eq!(lwi[0].subject, "labels.csv:4");
    assert!(lwi[0].detail.contains("`missing`"), "{}", lwi[0].detail);

    let bad = problems(&cat, ProblemKind::BadRow);
    assert_eq!(bad.len(), 1, "{:?}", cat.problems);
    assert_eq!(bad[0].subject, "labels.csv:7");
    assert!(bad[0].detail.contains("nolabel"), "{}", bad[0].detail);

    // `nolabel.png` has a row (a bad one, reported above); only `unlisted.png` has none.
    let iwl = problems(&cat, ProblemKind::ImageWithoutLabel);
    assert_eq!(iwl.len(), 1, "{:?}", cat.problems);
    assert_eq!(iwl[0].subject, "unlisted.png");
    assert!(iwl[0].detail.contains("labels.csv"), "{}", iwl[0].detail);
    assert_eq!(cat.problems.len(), 3, "{:?}", cat.problems);
}

#[test]
fn csv_missing_target_column_lists_the_columns() {
    let d = tempdir();
    let r = d.path();
    gray(&r.join("img0.png"), 0);
    write(
        &r.join("labels.csv"),
        "image_id,label,patient_id\nimg0,1,P0\n",
    );
    let e = read_err(&csv_spec("labels.csv", "pneumonia"), r);
    assert!(e.message.contains("`pneumonia`"), "{}", e.message);
    for col in ["`image_id`", "`label`", "`patient_id`"] {
        assert!(e.message.contains(col), "{col} not in: {}", e.message);
    }
    assert!(e.hint.is_some());
}

// ---------------------------------------------------------------------------------------
// isic2019
// ---------------------------------------------------------------------------------------

const ISIC_HEADER: &str = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK";
const ISIC_CLASSES: [&str; 9] = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"];

/// A ground-truth row with 1.0 in the columns named by `hot`.
fn isic_row(image: &str, hot: &[&str]) -> String {
    let cells: Vec<&str> = ISIC_CLASSES
        .iter()
        .map(|c| if hot.contains(c) { "1.0" } else { "0.0" })
        .collect();
    format!("{image},{}\n", cells.join(","))
}

#[test]
fn isic_classes_without_images_are_left_out_and_bad_rows_reported() {
    let d = tempdir();
    let r = d.path();
    let mut gt = format!("{ISIC_HEADER}\n");
    for (k, class) in ISIC_CLASSES[..8].iter().enumerate() {
        let id = format!("ISIC_{k:07}");
        rgb_jpg(
            &r.join(format!("ISIC_2019_Training_Input/{id}.jpg")),
            k as u8,
        );
        gt.push_str(&isic_row(&id, &[class]));
    }
    rgb_jpg(&r.join("ISIC_2019_Training_Input/ISIC_0000100.jpg"), 100);
    rgb_jpg(&r.join("ISIC_2019_Training_Input/ISIC_0000101.jpg"), 101);
    gt.push_str(&isic_row("ISIC_0000100", &["MEL", "NV"])); // line 10
    gt.push_str(&isic_row("ISIC_0000101", &[])); // line 11
    write(&r.join("ISIC_2019_Training_GroundTruth.csv"), &gt);

    let cat = read_ok(&spec(DatasetFormat::Isic2019), r);
    assert_eq!(cat.classes, &ISIC_CLASSES[..8]);
    assert_eq!(cat.target, "diagnosis");
    assert_eq!(cat.len(), 8);
    assert!(
        cat.notes.iter().any(|n| n.contains("`UNK`")),
        "{:?}",
        cat.notes
    );
    let bad = problems(&cat, ProblemKind::BadRow);
    assert_eq!(bad.len(), 2, "{:?}", cat.problems);
    assert_eq!(bad[0].subject, "ISIC_2019_Training_GroundTruth.csv:10");
    assert!(bad[0].detail.contains("2 classes"), "{}", bad[0].detail);
    assert_eq!(bad[1].subject, "ISIC_2019_Training_GroundTruth.csv:11");
    assert!(bad[1].detail.contains("no class"), "{}", bad[1].detail);
    // Their images have rows (bad ones): they are not also images without a label.
    assert_eq!(cat.problems.len(), 2, "{:?}", cat.problems);
    // No metadata: a note, and images are split one by one.
    assert!(
        cat.notes
            .iter()
            .any(|n| n.contains("ISIC_2019_Training_Metadata.csv")),
        "{:?}",
        cat.notes
    );
    let p = partition(cat);
    assert_eq!(p.by(), SplitBy::Image);
    assert_eq!(per_class_total(&p), [1; 8]);
}

#[test]
fn classes_keeps_the_named_ones_in_their_order() {
    let d = tempdir();
    let r = d.path();
    let mut gt = format!("{ISIC_HEADER}\n");
    for (k, class) in ["MEL", "NV", "NV", "BCC", "MEL"].iter().enumerate() {
        let id = format!("ISIC_{k:07}");
        rgb_jpg(
            &r.join(format!("ISIC_2019_Training_Input/{id}.jpg")),
            k as u8,
        );
        gt.push_str(&isic_row(&id, &[class]));
    }
    write(&r.join("ISIC_2019_Training_GroundTruth.csv"), &gt);
    let mut s = spec(DatasetFormat::Isic2019);
    s.classes = Some(vec!["NV".into(), "MEL".into()]);
    let cat = read_ok(&s, r);
    assert_eq!(cat.classes, ["NV", "MEL"]);
    assert!(cat.is_binary());
    assert_eq!(cat.len(), 4);
    assert!(
        cat.notes
            .iter()
            .any(|n| n.contains("1 images of the other classes")),
        "{:?}",
        cat.notes
    );
    let p = partition(cat);
    // MEL (the second named) is the positive class: two of them.
    assert_eq!(per_class_total(&p), [2, 2]);

    s.classes = Some(vec!["NV".into(), "melanoma".into()]);
    let e = read_err(&s, r).render();
    assert!(
        e.contains("`classes` names `melanoma`, which is not a class of the dataset")
            && e.contains("MEL, NV, BCC"),
        "{e}"
    );
}

#[test]
fn isic_lesions_from_metadata_stay_in_one_split() {
    let d = tempdir();
    let r = d.path();
    let mut gt = format!("{ISIC_HEADER}\n");
    let mut meta = String::from("image,age_approx,anatom_site_general,lesion_id,sex\n");
    let mut lesion_of = BTreeMap::new();
    for l in 0..30u32 {
        let class = ISIC_CLASSES[(l % 3) as usize];
        for k in 0..2u32 {
            let id = format!("ISIC_{:07}", l * 2 + k);
            rgb_jpg(&r.join(format!("{id}.jpg")), (l * 2 + k) as u8);
            gt.push_str(&isic_row(&id, &[class]));
            meta.push_str(&format!("{id},45.0,anterior torso,IL_{l:07},female\n"));
            lesion_of.insert(id, format!("IL_{l:07}"));
        }
    }
    write(&r.join("ISIC_2019_Training_GroundTruth.csv"), &gt);
    write(&r.join("ISIC_2019_Training_Metadata.csv"), &meta);

    let cat = read_ok(&spec(DatasetFormat::Isic2019), r);
    assert_eq!(cat.classes, ["MEL", "NV", "BCC"]);
    assert!(cat.has_lesions());
    assert!(!cat.has_patients());
    assert!(cat.problems.is_empty(), "{:?}", cat.problems);
    let p = partition(cat);
    assert_eq!(p.by(), SplitBy::Lesion);
    for item in p.train().iter().chain(p.val()) {
        assert_eq!(item.lesion.as_ref(), lesion_of.get(&item.id));
    }
    let splits = split_of(&p);
    assert_eq!(splits.len(), 60);
    let mut by_lesion: BTreeMap<&String, BTreeSet<Split>> = BTreeMap::new();
    for (id, s) in &splits {
        by_lesion.entry(&lesion_of[id]).or_default().insert(*s);
    }
    for (lesion, s) in &by_lesion {
        assert_eq!(s.len(), 1, "lesion {lesion} in {s:?}");
    }
    // The split is not trivial: every split has lesions.
    for s in Split::ALL {
        let c = p.counts(s);
        assert!(c.groups > 0, "{s:?} is empty");
        assert_eq!(c.images, 2 * c.groups, "{s:?}: {c:?}");
    }
    assert!(p.leakage().shared.is_empty());
}

// ---------------------------------------------------------------------------------------
// yolo
// ---------------------------------------------------------------------------------------

/// Sums of the audit's supervision counts over the three splits: (boxed, image-level only,
/// boxes).
fn supervision_totals(a: &engine_data::audit::Audit) -> (usize, usize, usize) {
    let mut t = (0, 0, 0);
    for s in ["train", "val", "test"] {
        let c = &a.supervision.splits[s];
        t.0 += c.boxed;
        t.1 += c.image_level_only;
        t.2 += c.boxes;
    }
    t
}

#[test]
fn yolo_boxed_and_image_level_images() {
    let d = tempdir();
    let r = d.path();
    write(&r.join("classes.txt"), "fracture\ntext\n");
    for (i, name) in ["pos", "textonly", "empty", "lvl_pos", "lvl_neg"]
        .iter()
        .enumerate()
    {
        gray(&r.join(format!("images/{name}.png")), i as u8);
    }
    write(
        &r.join("labels/pos.txt"),
        "0 0.5 0.5 0.2 0.3\n1 0.1 0.1 0.05 0.05\n",
    );
    write(&r.join("labels/textonly.txt"), "1 0.5 0.5 0.1 0.1\n");
    write(&r.join("labels/empty.txt"), "");
    write(
        &r.join("image_labels.csv"),
        "image_id,fracture,patient_id\nlvl_pos,1,P1\nlvl_neg,0,P2\npos,1,P1\n",
    );
    let cat = read_ok(&spec(DatasetFormat::Yolo), r);
    assert_eq!(cat.box_classes, ["fracture", "text"]);
    assert_eq!(cat.target, "fracture");
    assert_eq!(cat.classes, ["no_fracture", "fracture"]);
    assert_eq!(cat.len(), 5);
    assert!(cat.problems.is_empty(), "{:?}", cat.problems);
    let mut p = partition(cat);
    // pos and lvl_pos are positive; a `text` box does not make an image positive.
    assert_eq!(per_class_total(&p), [3, 2]);
    let a = engine_data::audit::audit(&mut p, "x").unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(a.supervision.kind, "boxes", "{}", a.supervision.summary);
    // pos (2 boxes), textonly (1), empty (0: boxed, nothing found).
    assert_eq!(supervision_totals(&a), (3, 2, 3));
    // The patient of a boxed image comes from its image-level row; boxes are kept as read.
    let items = all_items(&p);
    let pos = items.iter().find(|i| i.id == "pos").unwrap();
    assert_eq!(pos.patient.as_deref(), Some("P1"));
    let boxes = pos.boxes.as_ref().unwrap();
    assert_eq!(boxes.len(), 2);
    assert_eq!(
        (
            boxes[0].class,
            boxes[0].cx,
            boxes[0].cy,
            boxes[0].w,
            boxes[0].h
        ),
        (0, 0.5, 0.5, 0.2, 0.3)
    );
    assert_eq!(boxes[1].class, 1);
    let empty = items.iter().find(|i| i.id == "empty").unwrap();
    assert_eq!(empty.boxes.as_deref(), Some(&[][..]));
    assert_eq!(empty.class, 0);
    let lvl = items.iter().find(|i| i.id == "lvl_pos").unwrap();
    assert!(lvl.boxes.is_none());
    assert_eq!(lvl.patient.as_deref(), Some("P1"));
}

#[test]
fn yolo_malformed_box_files_leave_their_image_out() {
    let d = tempdir();
    let r = d.path();
    write(&r.join("classes.txt"), "fracture\ntext\n");
    for (i, name) in ["good", "four", "class", "coord", "zero"]
        .iter()
        .enumerate()
    {
        gray(&r.join(format!("images/{name}.png")), i as u8);
    }
    write(&r.join("labels/good.txt"), "0 0.5 0.5 0.2 0.2\n");
    write(&r.join("labels/four.txt"), "0 0.5 0.5 0.2\n");
    write(
        &r.join("labels/class.txt"),
        "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.1 0.1\n",
    );
    write(&r.join("labels/coord.txt"), "0 1.5 0.5 0.1 0.1\n");
    write(&r.join("labels/zero.txt"), "0 0.5 0.5 0 0.1\n");
    let cat = read_ok(&spec(DatasetFormat::Yolo), r);
    assert_eq!(cat.len(), 1);
    let bad = problems(&cat, ProblemKind::BadRow);
    assert_eq!(bad.len(), 4, "{:?}", cat.problems);
    let by_subject: BTreeMap<&str, &str> = bad
        .iter()
        .map(|p| (p.subject.as_str(), p.detail.as_str()))
        .collect();
    assert!(by_subject["labels/four.txt"].contains("4 fields"));
    assert!(by_subject["labels/class.txt"].starts_with("line 2:"));
    assert!(by_subject["labels/class.txt"].contains("class 2"));
    assert!(by_subject["labels/coord.txt"].contains("normalised"));
    assert!(by_subject["labels/zero.txt"].contains("positive width"));
    assert_eq!(cat.problems.len(), 4, "{:?}", cat.problems);
}

#[test]
fn yolo_orphans_and_disagreements_are_problems() {
    let d = tempdir();
    let r = d.path();
    write(&r.join("classes.txt"), "fracture\n");
    for (i, name) in ["a", "b", "nolabel", "disagree"].iter().enumerate() {
        gray(&r.join(format!("images/{name}.png")), i as u8);
    }
    write(&r.join("labels/a.txt"), "0 0.5 0.5 0.2 0.2\n");
    write(&r.join("labels/ghost.txt"), "0 0.5 0.5 0.2 0.2\n");
    write(&r.join("labels/disagree.txt"), "0 0.4 0.4 0.2 0.2\n");
    write(
        &r.join("image_labels.csv"),
        "image_id,fracture,patient_id\nb,0,P1\nghost2,1,P2\ndisagree,0,P3\n",
    );
    let cat = read_ok(&spec(DatasetFormat::Yolo), r);
    assert_eq!(cat.len(), 3); // a, b, disagree
    assert_eq!(
        kinds(&cat),
        BTreeMap::from([
            (ProblemKind::LabelWithoutImage, 2),
            (ProblemKind::ImageWithoutLabel, 1),
            (ProblemKind::BadRow, 1),
        ]),
        "{:?}",
        cat.problems
    );
    let iwl = problems(&cat, ProblemKind::ImageWithoutLabel);
    assert_eq!(iwl[0].subject, "images/nolabel.png");
    let lwi: BTreeSet<&str> = problems(&cat, ProblemKind::LabelWithoutImage)
        .iter()
        .map(|p| p.subject.as_str())
        .collect();
    assert_eq!(
        lwi,
        BTreeSet::from(["labels/ghost.txt", "image_labels.csv:3"])
    );
    let bad = problems(&cat, ProblemKind::BadRow);
    assert_eq!(bad[0].subject, "image_labels.csv:4");
    assert!(
        bad[0].detail.contains("boxes are used"),
        "{}",
        bad[0].detail
    );
    // The boxes win: `disagree` is positive, like `a`.
    let mut p = partition(cat);
    assert_eq!(per_class_total(&p), [1, 2]);
    let a = engine_data::audit::audit(&mut p, "x").unwrap();
    assert_eq!(supervision_totals(&a), (2, 1, 2));
}

#[test]
fn yolo_class_map_from_data_yaml_list_and_map() {
    let forms = [
        ("names: [fracture, text]\n", vec!["fracture", "text"]),
        ("nc: 1\nnames: {0: fracture}\n", vec!["fracture"]),
        (
            "path: .\ntrain: images\nnames:\n  0: text\n  1: fracture\n",
            vec!["text", "fracture"],
        ),
    ];
    for (yaml, expected) in forms {
        let d = tempdir();
        let r = d.path();
        write(&r.join("data.yaml"), yaml);
        gray(&r.join("images/a.png"), 1);
        gray(&r.join("images/b.png"), 2);
        let k = expected.iter().position(|c| *c == "fracture").unwrap();
        write(&r.join("labels/a.txt"), &format!("{k} 0.5 0.5 0.2 0.2\n"));
        write(&r.join("labels/b.txt"), "");
        let cat = read_ok(&spec(DatasetFormat::Yolo), r);
        assert_eq!(cat.box_classes, expected, "{yaml}");
        assert_eq!(cat.target, "fracture", "{yaml}");
        assert!(cat.problems.is_empty(), "{yaml}: {:?}", cat.problems);
        assert_eq!(per_class_total(&partition(cat)), [1, 1], "{yaml}");
    }
}

// ---------------------------------------------------------------------------------------
// siim-acr
// ---------------------------------------------------------------------------------------

fn dcm_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "dcm") {
                out.insert(p.file_stem().unwrap().to_string_lossy().into_owned(), p);
            }
        }
    }
    out
}

#[test]
fn siim_problems_show_salted_ids_only() {
    let d = tempdir();
    let r = d.path().join("siim");
    engine_data::synth::write(
        &Family::Chest(ChestOptions {
            n: 30,
            neatx_n: 0,
            size: 32,
            ..Default::default()
        }),
        &r,
    )
    .unwrap();
    let files = dcm_files(&r);
    assert_eq!(files.len(), 30);
    let csv = std::fs::read_to_string(r.join("train-rle.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap().to_owned();
    let rows: Vec<(String, String)> = lines
        .map(|l| {
            let (id, rle) = l.split_once(',').unwrap();
            (id.trim().to_owned(), rle.trim().to_owned())
        })
        .collect();
    assert_eq!(rows.len(), 30);
    let positives: Vec<&String> = rows
        .iter()
        .filter(|(_, e)| e != "-1")
        .map(|(i, _)| i)
        .collect();
    let negatives: Vec<&String> = rows
        .iter()
        .filter(|(_, e)| e == "-1")
        .map(|(i, _)| i)
        .collect();
    assert!(!positives.is_empty() && negatives.len() >= 3);
    let unlabelled = negatives[0].clone(); // its rows removed
    let truncated = negatives[1].clone(); // its file cut to 200 bytes
    let malformed = negatives[2].clone(); // gets a malformed second row
    let twice = positives[0].clone(); // gets a second mask row
    let ghost = "2.25.123456789012345678901234567890".to_owned();

    let mut out = format!("{header}\n");
    for (id, rle) in &rows {
        if *id != unlabelled {
            out.push_str(&format!("{id}, {rle}\n"));
        }
    }
    let line_ghost = 1 + 29 + 1; // header, 29 rows
    out.push_str(&format!("{ghost}, -1\n"));
    let line_malformed = line_ghost + 1;
    out.push_str(&format!("{malformed}, 12 5 7\n"));
    out.push_str(&format!("{twice}, 3 4\n"));
    write(&r.join("train-rle.csv"), &out);
    let bytes = std::fs::read(&files[&truncated]).unwrap();
    std::fs::write(&files[&truncated], &bytes[..200]).unwrap();

    let s = salt();
    let cat = read_ok(&spec(DatasetFormat::SiimAcr), &r);
    assert!(cat.sensitive_ids);
    assert_eq!(cat.classes, ["no_pneumothorax", "pneumothorax"]);
    assert_eq!(cat.len(), 27, "{:?}", cat.problems);
    assert_eq!(
        kinds(&cat),
        BTreeMap::from([
            (ProblemKind::LabelWithoutImage, 1),
            (ProblemKind::ImageWithoutLabel, 1),
            (ProblemKind::BadRow, 1),
            (ProblemKind::Unreadable, 1),
        ]),
        "{:?}",
        cat.problems
    );
    let lwi = problems(&cat, ProblemKind::LabelWithoutImage)[0];
    assert_eq!(lwi.subject, format!("train-rle.csv:{line_ghost}"));
    assert!(
        lwi.detail.contains(&s.hash("img", &ghost)),
        "{}",
        lwi.detail
    );
    let iwl = problems(&cat, ProblemKind::ImageWithoutLabel)[0];
    assert!(iwl.subject.starts_with("img-"), "{}", iwl.subject);
    assert_eq!(iwl.subject, s.hash("img", &unlabelled));
    let bad = problems(&cat, ProblemKind::BadRow)[0];
    assert_eq!(bad.subject, format!("train-rle.csv:{line_malformed}"));
    assert!(bad.detail.contains("EncodedPixels"), "{}", bad.detail);
    let unreadable = problems(&cat, ProblemKind::Unreadable)[0];
    assert_eq!(unreadable.subject, s.hash("img", &truncated));

    for p in &cat.problems {
        for text in [&p.subject, &p.detail] {
            assert!(
                !text.contains("2.25.") && !text.contains("SYNTH"),
                "identifier in a problem: {p:?}"
            );
        }
    }
    for n in &cat.notes {
        assert!(!n.contains("2.25.") && !n.contains("SYNTH"), "{n}");
    }

    // Several rows of one image make one item; every positive has its mask.
    let mut p = partition(cat);
    assert!(p.by() == SplitBy::Patient);
    assert_eq!(per_class_total(&p), [27 - positives.len(), positives.len()]);
    let a = engine_data::audit::audit(&mut p, "siim").unwrap_or_else(|e| panic!("{}", e.render()));
    assert!(a.excluded.is_empty(), "{:?}", a.excluded.len());
    assert_eq!(a.n_images, 27);
    let masks: usize = ["train", "val", "test"]
        .iter()
        .map(|s| a.supervision.splits[*s].masks)
        .sum();
    assert_eq!(masks, positives.len());
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains("2.25.") && !json.contains("SYNTH"));
}

// ---------------------------------------------------------------------------------------
// attributes
// ---------------------------------------------------------------------------------------

#[test]
fn attribute_csv_attaches_values_and_reports_bad_rows() {
    let d = tempdir();
    let r = d.path();
    gray(&r.join("normal/a0.png"), 0);
    gray(&r.join("normal/a1.png"), 1);
    gray(&r.join("effusion/b0.png"), 2);
    gray(&r.join("effusion/b1.png"), 3);
    write(
        &r.join("drains.csv"),
        "image_id,drain\na0,1\nb0,0.25\nghost,1\nb1,yes\na1,\n",
    );
    let mut s = spec(DatasetFormat::FolderPerClass);
    s.attributes.insert(
        "drain".into(),
        AttributeSource {
            file: "drains.csv".into(),
            id_column: "image_id".into(),
            column: None,
        },
    );
    let cat = read_ok(&s, r);
    assert_eq!(cat.attributes, ["drain"]);
    assert_eq!(cat.len(), 4);
    let awi = problems(&cat, ProblemKind::AttributeWithoutImage);
    assert_eq!(awi.len(), 1, "{:?}", cat.problems);
    assert_eq!(awi[0].subject, "drains.csv:4");
    assert!(awi[0].detail.contains("`ghost`"));
    let bad = problems(&cat, ProblemKind::BadRow);
    assert_eq!(bad.len(), 1, "{:?}", cat.problems);
    assert_eq!(bad[0].subject, "drains.csv:5");
    assert!(bad[0].detail.contains("`yes`"), "{}", bad[0].detail);
    assert_eq!(cat.problems.len(), 2);

    let p = cat
        .partition(&SplitSpec {
            val: 0.0,
            test: 0.0,
            ..SplitSpec::default()
        })
        .unwrap();
    assert_eq!(p.train().len(), 4);
    let drain: BTreeMap<&str, Option<f64>> = p
        .train()
        .iter()
        .map(|i| (i.id.as_str(), i.attributes.get("drain").copied()))
        .collect();
    assert_eq!(
        drain,
        BTreeMap::from([
            ("a0", Some(1.0)),
            ("a1", None),
            ("b0", Some(0.25)),
            ("b1", None)
        ])
    );
}

#[test]
fn attribute_column_can_differ_from_its_name() {
    let d = tempdir();
    let r = d.path();
    gray(&r.join("normal/a0.png"), 0);
    gray(&r.join("effusion/b0.png"), 2);
    write(&r.join("extra.csv"), "file,has_drain\na0.png,0\nb0.png,1\n");
    let mut s = spec(DatasetFormat::FolderPerClass);
    s.attributes.insert(
        "drain".into(),
        AttributeSource {
            file: "extra.csv".into(),
            id_column: "file".into(),
            column: Some("has_drain".into()),
        },
    );
    let cat = read_ok(&s, r);
    assert!(cat.problems.is_empty(), "{:?}", cat.problems);
    let p = cat
        .partition(&SplitSpec {
            val: 0.0,
            test: 0.0,
            ..SplitSpec::default()
        })
        .unwrap();
    let drain: Vec<Option<f64>> = p
        .train()
        .iter()
        .map(|i| i.attributes.get("drain").copied())
        .collect();
    assert_eq!(drain, [Some(0.0), Some(1.0)]);

    // A missing column is an error naming the columns there are.
    let mut s2 = spec(DatasetFormat::FolderPerClass);
    s2.attributes.insert(
        "drain".into(),
        AttributeSource {
            file: "extra.csv".into(),
            id_column: "image_id".into(),
            column: None,
        },
    );
    let e = read_err(&s2, r);
    assert!(
        e.message.contains("`file`") && e.message.contains("`has_drain`"),
        "{}",
        e.message
    );
}

// ---------------------------------------------------------------------------------------
// Unreadable images (found by the audit, which decodes them)
// ---------------------------------------------------------------------------------------

#[test]
fn a_dataset_of_only_unreadable_images_is_an_audit_error() {
    let d = tempdir();
    let r = d.path();
    for name in [
        "normal/a.png",
        "normal/b.png",
        "effusion/c.png",
        "effusion/d.jpg",
    ] {
        write(&r.join(name), "this is not an image");
    }
    let cat = read_ok(&spec(DatasetFormat::FolderPerClass), r);
    assert_eq!(cat.len(), 4);
    let mut p = partition(cat);
    let e = engine_data::audit::audit(&mut p, "garbage").unwrap_err();
    assert!(e.message.contains("no usable image"), "{}", e.message);
    assert!(e.message.contains("all 4"), "{}", e.message);
}

#[test]
fn a_partly_unreadable_dataset_excludes_the_bad_images() {
    let d = tempdir();
    let r = d.path();
    for i in 0..3u8 {
        gray(&r.join(format!("normal/n{i}.png")), i);
        gray(&r.join(format!("effusion/e{i}.png")), 10 + i);
    }
    write(&r.join("normal/bad.png"), "\u{89}PNG but not really");
    let cat = read_ok(&spec(DatasetFormat::FolderPerClass), r);
    assert_eq!(cat.len(), 7);
    let mut p = partition(cat);
    let a = engine_data::audit::audit(&mut p, "partly").unwrap();
    assert_eq!(a.excluded.len(), 1);
    assert_eq!(a.excluded[0].image, "normal/bad.png");
    assert_eq!(a.n_images, 6);
    assert_eq!(a.problems.counts.get("unreadable"), Some(&1));
    let left: usize = Split::ALL.iter().map(|s| p.counts(*s).images).sum();
    assert_eq!(left, 6);
    assert!(!split_of(&p).contains_key("bad"));
}

// ---------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------

/// A csv-images dataset of 30 patients with 1 to 3 images each (`p{P}_{K}`), the files and
/// rows written in the given order of patients.
fn patient_dataset(root: &Path, order: &[u32]) -> Vec<(String, String, u8)> {
    let mut rows = Vec::new();
    for &pt in order {
        for k in 0..(1 + pt % 3) {
            let id = format!("p{pt:02}_{k}");
            let label = u8::from((pt + k) % 4 == 0);
            rows.push((id, format!("PT{pt:02}"), label));
        }
    }
    let mut csv = String::from("image_id,pneumothorax,patient_id\n");
    for (i, (id, pt, label)) in rows.iter().enumerate() {
        gray(&root.join(format!("images/{id}.png")), i as u8);
        csv.push_str(&format!("{id},{label},{pt}\n"));
    }
    write(&root.join("labels.csv"), &csv);
    rows
}

fn patient_catalog(root: &Path) -> Catalog {
    read_ok(&csv_spec("labels.csv", "pneumothorax"), root)
}

fn seeded(seed: u64) -> SplitSpec {
    SplitSpec {
        seed,
        ..SplitSpec::default()
    }
}

#[test]
fn same_seed_same_split_whatever_the_file_order() {
    let forward: Vec<u32> = (0..30).collect();
    let backward: Vec<u32> = (0..30).rev().collect();
    let mut shuffled: Vec<u32> = (0..30).collect();
    shuffled.sort_by_key(|p| (p * 17) % 30);
    let mut results = Vec::new();
    for order in [&forward, &backward, &shuffled] {
        let d = tempdir();
        patient_dataset(d.path(), order);
        let p = patient_catalog(d.path()).partition(&seeded(7)).unwrap();
        results.push((ids(p.train()), ids(p.val()), p.counts(Split::Test)));
    }
    assert!(!results[0].0.is_empty() && !results[0].1.is_empty());
    assert!(results[0].2.images > 0);
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[test]
fn different_seeds_give_different_splits() {
    let d = tempdir();
    patient_dataset(d.path(), &(0..30).collect::<Vec<_>>());
    let a = patient_catalog(d.path()).partition(&seeded(0)).unwrap();
    let b = patient_catalog(d.path()).partition(&seeded(1)).unwrap();
    let again = patient_catalog(d.path()).partition(&seeded(0)).unwrap();
    assert_ne!(ids(a.train()), ids(b.train()));
    assert_eq!(ids(a.train()), ids(again.train()));
    assert_eq!(ids(a.val()), ids(again.val()));
}

#[test]
fn no_patient_in_two_splits() {
    let d = tempdir();
    let rows = patient_dataset(d.path(), &(0..30).collect::<Vec<_>>());
    let p = patient_catalog(d.path()).partition(&seeded(3)).unwrap();
    assert_eq!(p.by(), SplitBy::Patient);
    let splits = split_of(&p);
    assert_eq!(splits.len(), rows.len());
    let mut by_patient: BTreeMap<&str, BTreeSet<Split>> = BTreeMap::new();
    for (id, pt, _) in &rows {
        by_patient.entry(pt).or_default().insert(splits[id]);
    }
    for (pt, s) in &by_patient {
        assert_eq!(s.len(), 1, "{pt} in {s:?}");
    }
    let used: BTreeSet<Split> = splits.values().copied().collect();
    assert_eq!(used.len(), 3, "some split is empty");
    assert!(p.leakage().shared.is_empty());
    // Counts agree with what the key shows.
    for s in Split::ALL {
        assert_eq!(
            p.counts(s).images,
            splits.values().filter(|x| **x == s).count()
        );
    }
}

#[test]
fn split_file_fixes_the_test_set_with_the_patients_other_images() {
    let d = tempdir();
    let rows = patient_dataset(d.path(), &(0..30).collect::<Vec<_>>());
    // PT05 has 3 images, PT07 2, PT09 1; name one image of each.
    write(
        &d.path().join("split.csv"),
        "image_id,split\np05_0,test\np07_1,test\np09_0,test\nnot_an_image,test\n",
    );
    let spec = SplitSpec {
        file: Some("split.csv".into()),
        ..seeded(11)
    };
    let p = patient_catalog(d.path()).partition(&spec).unwrap();
    let expected: BTreeSet<String> = rows
        .iter()
        .filter(|(_, pt, _)| ["PT05", "PT07", "PT09"].contains(&pt.as_str()))
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(expected.len(), 6);
    assert_eq!(p.counts(Split::Test).images, 6);
    assert_eq!(p.counts(Split::Test).groups, 3);
    let ws = tempdir();
    let key = TestKey::record(ws.path(), "patients", "check the split file").unwrap();
    let test: BTreeSet<String> = ids(p.test(&key)).into_iter().collect();
    assert_eq!(test, expected);
    // The others are shared between training and validation only.
    assert_eq!(p.train().len() + p.val().len(), rows.len() - 6);
    assert!(!p.val().is_empty());
}

#[test]
fn split_file_splitting_a_patient_is_an_error() {
    let d = tempdir();
    patient_dataset(d.path(), &(0..30).collect::<Vec<_>>());
    write(
        &d.path().join("split.csv"),
        "image_id,split\np05_0,train\np05_2,test\n",
    );
    let spec = SplitSpec {
        file: Some("split.csv".into()),
        ..SplitSpec::default()
    };
    let e = patient_catalog(d.path()).partition(&spec).unwrap_err();
    assert!(e.message.contains("split.csv"), "{}", e.message);
    assert!(e.message.contains("2 splits"), "{}", e.message);
    assert!(e.message.contains("patient"), "{}", e.message);
    // The patient appears hashed, never in clear.
    assert!(!e.message.contains("PT05"), "{}", e.message);
}

#[test]
fn test_key_records_each_opening() {
    let ws = tempdir();
    let log = ws.path().join(".engine/test-access.jsonl");
    assert!(!log.exists());
    TestKey::record(ws.path(), "chest", "final evaluation").unwrap();
    TestKey::record(ws.path(), "derm", "report").unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["dataset"], "chest");
    assert_eq!(lines[0]["purpose"], "final evaluation");
    assert_eq!(lines[1]["dataset"], "derm");
    assert_eq!(lines[1]["purpose"], "report");
    assert!(lines[0]["at"].is_string());
    assert_eq!(lines[0]["pid"], std::process::id());
}
