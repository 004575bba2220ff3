//! `engine synth`, `engine audit`, and the `data.audit` stage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use engine_core::job::StageJob;
use engine_core::manifest::{AttributeSource, Dataset, DatasetFormat, SplitSpec, StageParams};
use engine_data::audit::{self, Audit};
use engine_data::salt::Salt;
use engine_data::synth::{self, ChestOptions, DermOptions, Family, WristOptions};

use crate::cli::{AuditArgs, SynthArgs, SynthFamily};
use crate::{EXIT_FAILED, EXIT_USAGE};

fn usage(msg: impl std::fmt::Display, hint: Option<&str>) -> ExitCode {
    eprintln!("error: {msg}");
    if let Some(h) = hint {
        eprintln!("  hint: {h}");
    }
    ExitCode::from(EXIT_USAGE)
}

/// `engine synth`.
pub fn synth(a: &SynthArgs) -> anyhow::Result<ExitCode> {
    // Flags of one family given to another are mistakes, not silently ignored.
    let given: Vec<(&str, bool, &[SynthFamily])> = vec![
        (
            "--positive-rate",
            a.positive_rate.is_some(),
            &[SynthFamily::Chest, SynthFamily::Wrist],
        ),
        (
            "--drain-given-positive",
            a.drain_given_positive.is_some(),
            &[SynthFamily::Chest],
        ),
        (
            "--drain-given-negative",
            a.drain_given_negative.is_some(),
            &[SynthFamily::Chest],
        ),
        (
            "--test-fraction",
            a.test_fraction.is_some(),
            &[SynthFamily::Chest, SynthFamily::Wrist],
        ),
        (
            "--test-drain-given-positive",
            a.test_drain_given_positive.is_some(),
            &[SynthFamily::Chest],
        ),
        (
            "--test-drain-given-negative",
            a.test_drain_given_negative.is_some(),
            &[SynthFamily::Chest],
        ),
        ("--neatx", a.neatx.is_some(), &[SynthFamily::Chest]),
        (
            "--box-fraction",
            a.box_fraction.is_some(),
            &[SynthFamily::Wrist],
        ),
        (
            "--difficulty",
            a.difficulty.is_some(),
            &[SynthFamily::Derm, SynthFamily::Wrist],
        ),
    ];
    for (flag, set, families) in given {
        if set && !families.contains(&a.family) {
            let names: Vec<&str> = families.iter().map(|f| family_name(*f)).collect();
            return Ok(usage(
                format!("{flag} does not apply to `{}`", family_name(a.family)),
                Some(&format!("it applies to {}", names.join(" and "))),
            ));
        }
    }
    let family = match a.family {
        SynthFamily::Chest => {
            let d = ChestOptions::default();
            let dgp = a.drain_given_positive.unwrap_or(d.drain_given_positive);
            let dgn = a.drain_given_negative.unwrap_or(d.drain_given_negative);
            Family::Chest(ChestOptions {
                n: a.n,
                seed: a.seed,
                size: a.size,
                positive_rate: a.positive_rate.unwrap_or(d.positive_rate),
                drain_given_positive: dgp,
                drain_given_negative: dgn,
                test_fraction: a.test_fraction.unwrap_or(0.0),
                test_drain_given_positive: a.test_drain_given_positive.unwrap_or(dgp),
                test_drain_given_negative: a.test_drain_given_negative.unwrap_or(dgn),
                neatx_n: a.neatx.unwrap_or(a.n / 4),
            })
        }
        SynthFamily::Derm => Family::Derm(DermOptions {
            n: a.n,
            seed: a.seed,
            size: a.size,
            difficulty: a.difficulty.unwrap_or(0.0),
        }),
        SynthFamily::Wrist => {
            let d = WristOptions::default();
            Family::Wrist(WristOptions {
                n: a.n,
                seed: a.seed,
                size: a.size,
                positive_rate: a.positive_rate.unwrap_or(d.positive_rate),
                box_fraction: a.box_fraction.unwrap_or(d.box_fraction),
                test_fraction: a.test_fraction.unwrap_or(0.0),
                difficulty: a.difficulty.unwrap_or(0.0),
            })
        }
    };
    if (a.test_drain_given_positive.is_some() || a.test_drain_given_negative.is_some())
        && a.test_fraction.unwrap_or(0.0) <= 0.0
    {
        return Ok(usage(
            "test drain rates need a test split",
            Some("add --test-fraction F (for example 0.2) to fix a test split in split.csv"),
        ));
    }
    let started = std::time::Instant::now();
    eprintln!(
        "writing a synthetic `{}` dataset of {} images to {} ...",
        family_name(a.family),
        a.n,
        a.out.display()
    );
    match synth::write(&family, &a.out) {
        Ok(described) => {
            println!(
                "{}: {described} ({:.1} s)",
                a.out.display(),
                started.elapsed().as_secs_f64()
            );
            println!(
                "see {} for what the signals look like and how to declare it",
                a.out.join("README.md").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.usage => Ok(usage(e, None)),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

fn family_name(f: SynthFamily) -> &'static str {
    match f {
        SynthFamily::Chest => "chest",
        SynthFamily::Derm => "derm",
        SynthFamily::Wrist => "wrist",
    }
}

/// `engine audit`.
pub fn audit(a: &AuditArgs) -> anyhow::Result<ExitCode> {
    let is_manifest = a.target.is_file()
        && a.target
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml");
    let mut audits: Vec<Audit> = Vec::new();
    if is_manifest {
        let dir_flags = [
            ("--format", a.format.is_some()),
            ("--attribute", !a.attribute.is_empty()),
            ("--labels", a.labels.is_some()),
            ("--target-column", a.target_column.is_some()),
            ("--split-file", a.split_file.is_some()),
        ];
        if let Some((flag, _)) = dir_flags.iter().find(|(_, set)| *set) {
            return Ok(usage(
                format!("{flag} applies to a dataset directory; a manifest declares its datasets"),
                Some("change the dataset's declaration in the manifest"),
            ));
        }
        let m = match crate::commands::load_or_report(&a.target) {
            Ok(m) => m,
            Err(code) => return Ok(code),
        };
        let names: Vec<String> = match &a.dataset {
            Some(n) if m.manifest.datasets.contains_key(n) => vec![n.clone()],
            Some(n) => {
                let known: Vec<&String> = m.manifest.datasets.keys().collect();
                return Ok(usage(
                    format!("the manifest declares no dataset `{n}`"),
                    Some(&format!("its datasets are {known:?}")),
                ));
            }
            None => m
                .manifest
                .datasets
                .iter()
                .filter(|(_, d)| d.format.has_images())
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if names.is_empty() {
            return Ok(usage(
                "the manifest declares no dataset with images",
                Some("declare one under `datasets` with an image format such as `siim-acr`"),
            ));
        }
        let salt = Salt::for_workspace(&m.dir)?;
        for name in names {
            let spec = &m.manifest.datasets[&name];
            if !spec.format.has_images() {
                return Ok(usage(
                    format!("dataset `{name}` has format `files`, which has no images to audit"),
                    None,
                ));
            }
            eprintln!("auditing `{name}` ...");
            match audit::run(&name, spec, &m.dir.join(&spec.root), &salt, &[]) {
                Ok(au) => audits.push(au),
                Err(e) => {
                    eprintln!("{}", e.render());
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
        }
    } else {
        if a.dataset.is_some() {
            return Ok(usage(
                "--dataset names a dataset of a manifest; the target is a directory",
                None,
            ));
        }
        if !a.target.is_dir() {
            return Ok(usage(
                format!(
                    "{} is neither a dataset directory nor a manifest (.yaml)",
                    a.target.display()
                ),
                Some("name a directory holding a dataset, or a manifest"),
            ));
        }
        let format = match &a.format {
            Some(f) => match DatasetFormat::from_name(f) {
                Some(fmt) if fmt.has_images() => fmt,
                _ => {
                    let names: Vec<&str> = DatasetFormat::ALL
                        .iter()
                        .filter(|f| f.has_images())
                        .map(|f| f.as_str())
                        .collect();
                    return Ok(usage(
                        format!("--format {f} is not a layout with images"),
                        Some(&format!("choose one of {}", names.join(", "))),
                    ));
                }
            },
            None => match audit::detect_format(&a.target) {
                Some(f) => f,
                None => {
                    return Ok(usage(
                        format!("cannot tell the layout of {}", a.target.display()),
                        Some(
                            "pass --format (folder-per-class, csv-images, isic2019, yolo or siim-acr)",
                        ),
                    ));
                }
            },
        };
        let mut spec = Dataset::new(format, a.target.display().to_string());
        spec.labels = a.labels.clone();
        spec.target = a.target_column.clone();
        for attr in &a.attribute {
            let Some((name, file)) = attr.split_once('=') else {
                return Ok(usage(
                    format!("--attribute {attr} is not NAME=FILE"),
                    Some("for example --attribute drain=drains.csv"),
                ));
            };
            spec.attributes.insert(
                name.to_owned(),
                AttributeSource {
                    file: file.to_owned(),
                    id_column: "image_id".into(),
                    column: None,
                },
            );
        }
        spec.split = Some(SplitSpec {
            seed: a.seed,
            file: a.split_file.clone(),
            ..SplitSpec::default()
        });
        let salt = Salt::load_or_create(&user_salt_path())?;
        let name = a
            .target
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "dataset".into());
        eprintln!(
            "auditing {} as `{}` ...",
            a.target.display(),
            format.as_str()
        );
        match audit::run(&name, &spec, &a.target, &salt, &[]) {
            Ok(au) => audits.push(au),
            Err(e) => {
                eprintln!("{}", e.render());
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    if let Some(out) = &a.out {
        let several = audits.len() > 1;
        for au in &audits {
            let dir = if several {
                out.join(&au.dataset.name)
            } else {
                out.clone()
            };
            audit::write(au, &dir)
                .map_err(|e| anyhow::anyhow!("cannot write the audit to {}: {e}", dir.display()))?;
        }
    }
    if a.json {
        let value = if audits.len() == 1 {
            serde_json::to_value(&audits[0])?
        } else {
            serde_json::to_value(&audits)?
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for au in &audits {
            print!("{}", audit::summary(au));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The salt for datasets audited outside a workspace: `$XDG_CACHE_HOME/engine/salt` or
/// `~/.cache/engine/salt`.
fn user_salt_path() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("engine").join("salt")
}

/// Runs a `data.audit` stage job.
pub fn run_audit_stage(job: &StageJob) -> Result<(), String> {
    let StageParams::DataAudit(p) = job.stage_params()? else {
        return Err("not a data.audit job".into());
    };
    let (spec, root) = job.dataset(&p.dataset)?;
    let salt = Salt::for_workspace(&job.workspace)
        .map_err(|e| format!("cannot read the workspace's salt: {e}"))?;
    let mut files = Vec::new();
    for stage in &p.from {
        let dir = job
            .upstream
            .get(stage)
            .ok_or_else(|| format!("no outputs of stage `{stage}`"))?;
        let f = dir.join("attributes.csv");
        if !f.is_file() {
            return Err(format!(
                "stage `{stage}` wrote no attributes.csv for the audit to read"
            ));
        }
        files.push(f);
    }
    let au = audit::run(&p.dataset, spec, root, &salt, &files)
        .map_err(|e| e.render().trim_start_matches("error: ").to_owned())?;
    audit::write(&au, &job.out_dir).map_err(|e| format!("cannot write the audit: {e}"))?;
    print!("{}", audit::summary(&au));
    Ok(())
}
