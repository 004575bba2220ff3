//! `engine init "REQUEST" --data DIR -o MANIFEST`: the task initialiser. It parses the
//! request, audits the data, chooses the first version's values by rules from the audit
//! (the way nnU-Net plans from a dataset fingerprint), and renders the manifest from the
//! handlebars template in `templates/`, each chosen value with a comment saying where it
//! came from. The result is checked against the schema and its meaning before it is
//! written; an existing file is never overwritten without `--force`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use engine_core::manifest::{Dataset, DatasetFormat, SplitBy, SplitSpec};
use engine_core::task::{ErrorPreference, TaskKind, TaskSpec};
use engine_data::audit::{self, Audit};
use engine_data::salt::Salt;
use serde_json::{Value, json};

use crate::cli::InitArgs;
use crate::{EXIT_FAILED, EXIT_USAGE};

/// The template every classification task starts from.
const CLASSIFICATION: &str = include_str!("../../../templates/classification.yaml.hbs");
const DETECTION: &str = include_str!("../../../templates/detection.yaml.hbs");

fn usage(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(EXIT_USAGE))
}

/// Runs `engine init`.
pub fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let mut request = args.request.trim().to_owned();
    if request.is_empty() {
        return usage(
            "the request is empty (hint: describe the model in words, e.g. engine init \"flag pneumothorax on chest X-rays\" --data data/chest)",
        );
    }
    if args.out.exists() && !args.force {
        return usage(format!(
            "{} exists (hint: choose another --out, or pass --force to replace it)",
            args.out.display()
        ));
    }
    let data = &args.data;
    if !data.is_dir() {
        return usage(format!(
            "--data {} is not a directory (hint: point it at the dataset, e.g. the output of `engine synth`)",
            data.display()
        ));
    }
    let read = |request: &str| crate::parse_llm::read_request(request, args.parser, &args.llm);
    let mut spec = match read(&request) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    if !spec.clarifications.is_empty() && !args.assume_defaults {
        if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            // The answers are more of the clinician's words: parse them with the request.
            let stdin = std::io::stdin();
            for q in spec.clarifications.clone() {
                eprint!("{q}\n> ");
                std::io::stderr().flush()?;
                let mut answer = String::new();
                stdin.lock().read_line(&mut answer)?;
                if !answer.trim().is_empty() {
                    request.push_str(". ");
                    request.push_str(answer.trim());
                }
            }
            spec = match read(&request) {
                Ok(s) => s,
                Err(e) => return usage(e),
            };
        }
        if !spec.clarifications.is_empty() {
            let list: Vec<String> = spec
                .clarifications
                .iter()
                .map(|q| format!("  - {q}"))
                .collect();
            return usage(format!(
                "the request leaves open:\n{}\n(hint: say it in the request, answer at a terminal, or pass --assume-defaults to go with the parser's reading)",
                list.join("\n")
            ));
        }
    }
    let Some(format) = audit::detect_format(data) else {
        return usage(format!(
            "cannot tell the layout of {} (hint: the engine reads ISIC 2019, SIIM-ACR, YOLO and folder-per-class layouts)",
            data.display()
        ));
    };
    let detection = spec.task == TaskKind::Detection;
    if detection && format != DatasetFormat::Yolo {
        return usage(format!(
            "the request asks where findings are (detection), and {} is in the `{}` layout, which has no boxes (hint: point --data at a YOLO dataset: images/, labels/*.txt with `class cx cy w h` lines)",
            data.display(),
            format.as_str()
        ));
    }
    if detection && !spec.confounders.is_empty() {
        eprintln!(
            "note: the detector does not take attributes yet, so {} is not debiased against; the manifest leaves it out",
            spec.confounders.join(", ")
        );
    }
    let out_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    std::fs::create_dir_all(&out_dir)?;
    let salt = Salt::for_workspace(&out_dir)?;
    let main = "images".to_owned();
    let mut ds = Dataset::new(format, relative(data, &out_dir));
    let mut plan = Plan::default();

    // Confounders: an attribute file at the root labels them directly; a labelled set of
    // their own (a CSV with a column named after them) trains a model that labels them.
    for c in &spec.confounders {
        let short = c.rsplit('_').next().unwrap_or(c).to_owned();
        let direct = data.join(format!("{short}s.csv"));
        if direct.is_file() && csv_has_column(&direct, &short) {
            ds.attributes.insert(
                short.clone(),
                engine_core::manifest::AttributeSource {
                    file: format!("{short}s.csv"),
                    id_column: "image_id".into(),
                    column: None,
                },
            );
            plan.attributes.push(json!({
                "name": short,
                "file": format!("{short}s.csv"),
                "why": format!("the request names `{c}`; {short}s.csv labels it on these images"),
            }));
        }
        if plan.attribute_model.is_none()
            && let Some((dir, labels)) = labelled_set(data, &short)
        {
            plan.attribute_model = Some((c.clone(), short.clone(), dir, labels));
        }
    }
    // A yes/no request on a dataset of more classes: keep the two it names.
    let mut classes_why = None;
    if spec.task == TaskKind::BinaryClassification
        && let (Some(pos), Some(neg)) = (&spec.positive_class, &spec.negative_class)
        && let Ok(catalog) = engine_data::read(&ds, data, &salt)
        && catalog.classes.len() > 2
    {
        let find = |label: &str| {
            catalog
                .classes
                .iter()
                .find(|c| engine_core::task::label_of(c).as_deref() == Some(label))
                .cloned()
        };
        if let (Some(p), Some(n)) = (find(pos), find(neg)) {
            classes_why = Some(format!(
                "the request sets {pos} against {neg}: the dataset's {p} and {n}; its other {} classes are left out",
                catalog.classes.len() - 2
            ));
            ds.classes = Some(vec![n, p]);
        }
    }
    // A split the data brings (split.csv with `image_id,split`, such as an official test
    // set) fixes the images it names; the shares split the rest.
    let split_file = data.join("split.csv");
    let fixed = (csv_has_column(&split_file, "image_id") && csv_has_column(&split_file, "split"))
        .then(|| "split.csv".to_owned());
    ds.split = Some(SplitSpec {
        file: fixed.clone(),
        ..SplitSpec::default()
    });
    let audit = match audit::run(&main, &ds, data, &salt, &[]) {
        Ok(a) => a,
        Err(e) => return usage(e.render().trim_start_matches("error: ")),
    };
    let by = match audit.patients.by.as_str() {
        "patient" => SplitBy::Patient,
        "lesion" => SplitBy::Lesion,
        _ => SplitBy::Image,
    };
    ds.split = Some(SplitSpec {
        by: Some(by),
        seed: 7,
        file: fixed,
        ..SplitSpec::default()
    });
    let built = if detection {
        detection_context(&spec, &request, &audit, &ds, &main)
    } else {
        context(&spec, &request, &audit, &ds, &main, data, &out_dir, &plan)
    };
    let mut context = match built {
        Ok(c) => c,
        Err(message) => return usage(message),
    };
    if let (Some(classes), Some(why)) = (&ds.classes, classes_why) {
        context["datasets"][0]["classes"] = json!(format!("[{}]", classes.join(", ")));
        context["datasets"][0]["classes_why"] = json!(why);
    }
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("indent", Box::new(indent));
    let mut text = hb
        .render_template(if detection { DETECTION } else { CLASSIFICATION }, &context)
        .map_err(|e| anyhow::anyhow!("the template does not render: {e}"))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }

    // Checked before it is written: a manifest init makes must load.
    let tmp = out_dir.join(format!(
        ".{}.init-{}",
        args.out
            .file_name()
            .map_or("pipeline.yaml".into(), |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    std::fs::write(&tmp, &text)?;
    match engine_core::load::load(&tmp) {
        Ok(_) => {}
        Err(invalid) => {
            let _ = std::fs::remove_file(&tmp);
            eprintln!(
                "error: the manifest init made does not validate (a bug in the initialiser):\n{}",
                invalid.render()
            );
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    }
    std::fs::rename(&tmp, &args.out)?;
    // Splits too small for what the request claims are said to be, before anything trains.
    for line in shortfalls(&spec, &audit) {
        eprintln!("warning: {line}");
    }
    eprintln!(
        "wrote {} ({} task on {} images; run `engine apply {}`)",
        args.out.display(),
        spec.task.as_str(),
        audit.n_images,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The request's claims that the validation or test split is too small to support, from the
/// audit's class counts (the positive class is the request's, by name or by the vocabulary's
/// reading of the dataset's name, else the second of two).
fn shortfalls(spec: &TaskSpec, audit: &Audit) -> Vec<String> {
    if spec.task != TaskKind::BinaryClassification {
        return Vec::new();
    }
    let named = spec.positive_class.as_deref().or(spec.target.as_deref());
    let positive = audit
        .classes
        .iter()
        .position(|c| {
            named.is_some_and(|n| {
                c.name == n || engine_core::task::label_of(&c.name).as_deref() == Some(n)
            })
        })
        .or((audit.classes.len() == 2).then_some(1));
    let Some(positive) = positive else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (split, words) in [("val", "validation"), ("test", "test")] {
        let count = |c: &engine_data::audit::ClassCount| {
            if split == "val" { c.val } else { c.test }
        };
        let pos = count(&audit.classes[positive]) as u64;
        let all: u64 = audit.classes.iter().map(|c| count(c) as u64).sum();
        out.extend(engine_core::task::requirements::shortfalls(
            spec,
            words,
            pos,
            all - pos,
        ));
    }
    out
}

/// The detection template's values: the resolution from the image sizes, and a teacher and
/// pseudo-labels when few training images have boxes.
fn detection_context(
    spec: &TaskSpec,
    request: &str,
    audit: &Audit,
    ds: &Dataset,
    main: &str,
) -> Result<Value, String> {
    let (w, h) = audit
        .images
        .sizes
        .first()
        .map_or((640, 640), |s| (s.width, s.height));
    let side = w.max(h);
    let image_size = (side / 32 * 32).clamp(64, 512);
    let size_why = if side > 512 {
        format!("images are mostly {w}x{h} px: letterboxed to 512 px, a size a CPU can still train")
    } else {
        format!("images are mostly {w}x{h} px: letterboxed near their own size")
    };
    let train = audit.supervision.splits.get("train");
    let (images, boxed) = train.map_or((0, 0), |t| (t.images, t.boxed));
    if boxed == 0 {
        return Err(format!(
            "no training image of {} has a box file (labels/*.txt), so a detector has nothing to learn from",
            ds.root
        ));
    }
    let sparse = (boxed as f64) < 0.5 * images as f64;
    let mut dataset = dataset_value(main, ds, &[], audit);
    if let Some(t) = &spec.target {
        dataset["target"] = json!(t);
        dataset["target_why"] = json!(format!(
            "the request asks for {t}; its boxes make an image positive"
        ));
    }
    let task = serde_norway::to_string(spec).map_err(|e| e.to_string())?;
    Ok(json!({
        "name": name_of(spec),
        "request": wrap(request, 86),
        "task": task.trim_end(),
        "main": main,
        "format_why": dataset["format_why"],
        "root": dataset["root"],
        "target": dataset["target"],
        "target_why": dataset["target_why"],
        "split_by": dataset["split_by"],
        "split_why": dataset["split_why"],
        "split_file": dataset["split_file"],
        "split_test": dataset["split_test"],
        "sparse": sparse,
        "sparse_why": format!("from the audit: {}", audit.supervision.summary),
        "det": {"image_size": image_size, "image_size_why": size_why},
    }))
}

/// What the rules found besides the main dataset.
#[derive(Debug, Default)]
struct Plan {
    /// Attribute files declared on the main dataset.
    attributes: Vec<Value>,
    /// A confounder with a labelled set of its own: (confounder, short name, dir, labels).
    attribute_model: Option<(String, String, PathBuf, String)>,
}

/// The template's values, each with the reason it was chosen.
#[allow(clippy::too_many_arguments)]
fn context(
    spec: &TaskSpec,
    request: &str,
    audit: &Audit,
    ds: &Dataset,
    main: &str,
    data: &Path,
    out_dir: &Path,
    plan: &Plan,
) -> Result<Value, String> {
    let k = audit.dataset.class_names.len();
    match spec.task {
        TaskKind::BinaryClassification if k != 2 => {
            return Err(format!(
                "the request asks for a yes/no model, and {} holds {k} classes ({}); point --data at a dataset of the two classes",
                data.display(),
                audit.dataset.class_names.join(", ")
            ));
        }
        TaskKind::MulticlassClassification if k < 3 => {
            return Err(format!(
                "the request asks to sort images into several classes, and {} holds {k}",
                data.display()
            ));
        }
        _ => {}
    }
    // Resolution: the most common image size, capped at 224 px.
    let (w, h) = audit
        .images
        .sizes
        .first()
        .map_or((224, 224), |s| (s.width, s.height));
    let side = w.min(h);
    let (image_size, size_why) = if side >= 224 {
        (
            224,
            format!("images are mostly {w}x{h} px; 224 px keeps detail at a cost a GPU carries"),
        )
    } else {
        let s = (side / 16 * 16).max(32);
        (
            s,
            format!("images are mostly {w}x{h} px: trained near their own size"),
        )
    };
    let (backbone, backbone_why) = if image_size <= 128 {
        (
            "small_cnn",
            "small images: a small CNN fits them and trains in minutes on a CPU",
        )
    } else {
        (
            "convnext_tiny",
            "ConvNeXt-Tiny, the reference backbone for 224 px images",
        )
    };
    // Class balance.
    let totals: Vec<(String, usize)> = audit
        .classes
        .iter()
        .map(|c| (c.name.clone(), c.train))
        .collect();
    let n_train: usize = totals.iter().map(|(_, n)| n).sum();
    let (big, small) = (
        totals
            .iter()
            .max_by_key(|(_, n)| *n)
            .cloned()
            .unwrap_or_default(),
        totals
            .iter()
            .min_by_key(|(_, n)| *n)
            .cloned()
            .unwrap_or_default(),
    );
    let ratio = big.1 as f64 / small.1.max(1) as f64;
    let share = |n: usize| 100.0 * n as f64 / n_train.max(1) as f64;
    let balance = format!(
        "from the audit: the largest training class ({}, {:.1}%) is {:.1}x the smallest ({}, {:.1}%)",
        big.0,
        share(big.1),
        ratio,
        small.0,
        share(small.1)
    );
    let class_weighted = ratio >= 3.0;
    let (loss_kind, loss_why) = match spec.task {
        TaskKind::BinaryClassification => (
            "bce",
            if class_weighted {
                format!("one logit; classes weighted, {balance}")
            } else {
                format!("one logit; {balance}")
            },
        ),
        _ => (
            "cross_entropy",
            if class_weighted {
                format!("classes weighted, {balance}")
            } else {
                balance.clone()
            },
        ),
    };
    let mut train = json!({
        "backbone": backbone,
        "backbone_why": backbone_why,
        "image_size": image_size,
        "image_size_why": size_why,
        "epochs": 15,
        "budget_minutes": 30,
        "loss_kind": loss_kind,
        "class_weighted": class_weighted,
        "loss_why": loss_why,
    });
    let mut evaluate = json!({});
    if spec.error_preference == ErrorPreference::MinimizeFalseNegatives
        || spec
            .objective
            .as_ref()
            .is_some_and(|o| o.at_specificity.is_some())
    {
        let at = spec
            .objective
            .as_ref()
            .and_then(|o| o.at_specificity)
            .unwrap_or(0.8);
        evaluate["at_specificity"] = json!(at);
        evaluate["at_specificity_why"] = json!(match spec.error_preference {
            ErrorPreference::MinimizeFalseNegatives =>
                "missed positives are the worse error: sensitivity is read at this specificity",
            _ => "the request's operating point",
        });
    }
    let mut datasets = vec![dataset_value(main, ds, &plan.attributes, audit)];
    let mut attribute_model = Value::Null;
    if let Some((confounder, short, dir, labels)) = &plan.attribute_model {
        let name = confounder.clone();
        let set = format!("{short}_labelled");
        let mut other = Dataset::new(DatasetFormat::CsvImages, relative(dir, out_dir));
        other.labels = Some(labels.clone());
        other.target = Some(short.clone());
        datasets.push(json!({
            "name": set,
            "format": "csv-images",
            "format_why": format!("{} holds images with `{short}` labels in {labels}", relative(dir, out_dir)),
            "root": other.root,
            "labels": labels,
            "target": short,
            "classes": null,
            "attributes": [],
            "split_by": "image",
            "split_why": "a set of its own, used only to learn the attribute",
            "split_file": "",
            "split_test": "0.15",
        }));
        attribute_model = json!({
            "name": name,
            "dataset": set,
            "model_stage": format!("{short}_model"),
            "labels_stage": format!("{short}_labels"),
        });
        train["sampler"] = json!(format!("{{kind: group_balanced, attribute: {name}}}"));
        train["sampler_why"] = json!(format!(
            "the request says the model must not rely on `{confounder}`: each label x {short} group equally often"
        ));
        train["debias"] = json!(format!(
            "{{kind: gradient_reversal, attribute: {name}_prob, lambda: 0.3}}"
        ));
        train["debias_why"] = json!(format!(
            "and its features are trained to hide the predicted {short}"
        ));
        train["from"] = json!(format!("{short}_labels"));
        let confound = plan
            .attributes
            .first()
            .and_then(|a| a["name"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{name}_prob"));
        evaluate["confound"] = json!(confound);
        evaluate["confound_why"] = json!(format!("how much the model leans on the {short}"));
    } else if let Some(a) = plan.attributes.first() {
        let name = a["name"].as_str().unwrap_or_default().to_owned();
        train["sampler"] = json!(format!("{{kind: group_balanced, attribute: {name}}}"));
        train["sampler_why"] = json!(format!(
            "the request says the model must not rely on the {name}: each label x {name} group equally often"
        ));
        train["debias"] = json!(format!(
            "{{kind: gradient_reversal, attribute: {name}, lambda: 0.3}}"
        ));
        train["debias_why"] = json!(format!("and its features are trained to hide the {name}"));
        evaluate["confound"] = json!(name);
        evaluate["confound_why"] = json!("how much the model leans on it");
    }
    let task = serde_norway::to_string(spec).map_err(|e| e.to_string())?;
    Ok(json!({
        "name": name_of(spec),
        "request": wrap(request, 86),
        "task": task.trim_end(),
        "main": main,
        "datasets": datasets,
        "attribute_model": attribute_model,
        "train": train,
        "evaluate": evaluate,
    }))
}

fn dataset_value(name: &str, ds: &Dataset, attributes: &[Value], audit: &Audit) -> Value {
    let groups = audit.patients.total;
    let (split_by, split_why) = match audit.patients.by.as_str() {
        "patient" => (
            "patient",
            format!("from the audit: {groups} patients; each patient's images stay in one split"),
        ),
        "lesion" => (
            "lesion",
            format!("from the audit: {groups} lesions; each lesion's images stay in one split"),
        ),
        _ => (
            "image",
            "from the audit: no patient ids, so images are split one by one".to_owned(),
        ),
    };
    // A split file that fixes test images replaces the test share (the rest is split into
    // training and validation only).
    let fixed_test = audit.splits.get("test").map_or(0, |t| t.images);
    let (split_file, split_test, split_why) =
        match ds.split.as_ref().and_then(|s| s.file.as_deref()) {
            Some(file) if fixed_test > 0 => (
                format!("file: {file}, "),
                "0",
                format!("{split_why}; {file} fixes the {fixed_test} test images"),
            ),
            Some(file) => (
                format!("file: {file}, "),
                "0.15",
                format!("{split_why}; {file} fixes the images it names"),
            ),
            None => (String::new(), "0.15", split_why),
        };
    json!({
        "name": name,
        "format": ds.format.as_str(),
        "format_why": format!("from the files: {} images in the {} layout", audit.n_images, ds.format.as_str()),
        "root": ds.root,
        "labels": ds.labels,
        "target": ds.target,
        "classes": null,
        "attributes": attributes,
        "split_by": split_by,
        "split_why": split_why,
        "split_file": split_file,
        "split_test": split_test,
    })
}

/// The words of `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
}

/// A manifest name from the task: `<target>-<task>`.
fn name_of(spec: &TaskSpec) -> String {
    let target = spec.target.clone().unwrap_or_else(|| "model".into());
    let kind = match spec.task {
        TaskKind::BinaryClassification => "binary",
        TaskKind::MulticlassClassification => "multiclass",
        TaskKind::Detection => "detection",
    };
    format!("{}-{kind}", target.replace('_', "-"))
}

/// `path` as the manifest in `base` should name it: relative when it lies under `base`.
fn relative(path: &Path, base: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (p, b) = (abs(path), abs(base));
    match p.strip_prefix(&b) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        Ok(_) => ".".into(),
        Err(_) => p.display().to_string(),
    }
}

/// Whether the CSV's header has `column`.
fn csv_has_column(path: &Path, column: &str) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|h| h.split(',').any(|c| c.trim() == column))
        })
        .unwrap_or(false)
}

/// A directory under `root` holding images with a CSV that labels `column` (a NEATX-like
/// set for a confounder): the directory and the CSV's name.
fn labelled_set(root: &Path, column: &str) -> Option<(PathBuf, String)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut csvs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        csvs.sort();
        for csv in csvs {
            if csv_has_column(&csv, column) && csv_has_column(&csv, "image_id") {
                let name = csv.file_name()?.to_string_lossy().into_owned();
                return Some((dir, name));
            }
        }
    }
    None
}

/// `{{indent text n}}`: every line of `text` indented by `n` spaces.
fn indent(
    h: &handlebars::Helper<'_>,
    _: &handlebars::Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let text = h.param(0).and_then(|v| v.value().as_str()).unwrap_or("");
    let n = h.param(1).and_then(|v| v.value().as_u64()).unwrap_or(2) as usize;
    let pad = " ".repeat(n);
    let lines: Vec<String> = text.lines().map(|l| format!("{pad}{l}")).collect();
    out.write(&lines.join("\n"))?;
    Ok(())
}
