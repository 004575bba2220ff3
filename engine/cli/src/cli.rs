//! Command-line flags, parsed by clap into raw structs; `main` turns them into actions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Turn a clinician's request into a reviewable, cached, reproducible imaging-model pipeline.
#[derive(Debug, Parser)]
#[command(
    name = "engine",
    version,
    about,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Check a manifest against the schema and its meaning; exit 2 with file:line:col errors.
    Validate {
        /// The manifest (YAML).
        manifest: PathBuf,
    },
    /// Show what `apply` would run, what is cached, and why each stage must run.
    Plan {
        /// The manifest (YAML).
        manifest: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the manifest's stages that are not cached.
    Apply {
        /// The manifest (YAML).
        manifest: PathBuf,
        /// Print a machine-readable summary as JSON on standard output.
        #[arg(long)]
        json: bool,
        /// CPU threads for all stages together [default: the machine's cores].
        #[arg(long, value_name = "N")]
        cpus: Option<u32>,
        /// GPU ids stages may use, comma-separated, or `none` [default: CUDA_VISIBLE_DEVICES, else the GPUs nvidia-smi lists].
        #[arg(long, value_name = "IDS")]
        gpus: Option<String>,
        /// Plain progress lines even on a terminal.
        #[arg(long)]
        plain: bool,
        /// Where stages run: child processes here, or one Slurm batch job each.
        #[arg(long, value_enum, default_value_t = Executor::Local)]
        executor: Executor,
        /// Slurm partition to submit to (with `--executor slurm`) [default: the cluster's].
        #[arg(long, value_name = "P")]
        partition: Option<String>,
    },
    /// Print the stage graph as Graphviz DOT or a Mermaid flowchart.
    Graph {
        /// The manifest (YAML).
        manifest: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Print the manifest JSON Schema (the file checked in under schemas/).
    Schema,
    /// Check the installation: engine and libtorch versions, devices, and a training step.
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Device for the training self-test: `cpu`, `cuda`, `cuda:N` or `auto`.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Evaluation metrics with 95% bootstrap confidence intervals, from a predictions file
    /// (binary, multiclass) or COCO ground truth and detections.
    Metrics(MetricsArgs),
    /// Turn a clinician's request in words into a TaskSpec (schemas/task.schema.json), with
    /// questions where the request leaves something open.
    Parse(ParseArgs),
    /// The held-out evaluation: open the sealed test split once, predict it with a trained
    /// model (and a baseline), and report every metric with its 95% CI and the paired tests.
    Test(TestArgs),
    /// Turn a clinician's request and a dataset into a first runnable manifest: parse,
    /// audit, choose values by rules from the audit (each with a comment saying why), and
    /// render it from the templates.
    Init(InitArgs),
    /// Write a synthetic dataset in a real layout, with known signals: `chest` (SIIM-ACR
    /// DICOM with pneumothorax masks, a drain shortcut, and a NEATX-like drain set), `derm`
    /// (ISIC 2019, eight imbalanced classes) or `wrist` (YOLO fracture boxes).
    Synth(SynthArgs),
    /// The data audit: counts per class and split, patients, sizes, duplicates, supervision,
    /// attribute cross-tabs and warnings, for a dataset directory or a manifest's datasets.
    Audit(AuditArgs),
    /// Improve the model one reviewable manifest change at a time: each round a proposer
    /// changes one node, the engine trains and validates, and the change is kept only if
    /// validation improves. The manifest itself is never modified; the best one is written
    /// beside it as NAME.best.yaml. Interrupted loops resume where they stopped.
    Develop(DevelopArgs),
    /// The rounds of a developer loop: change, validation objective, change against the
    /// best, kept or not.
    History {
        /// The manifest whose history to show [default: the only one in this directory].
        manifest: Option<PathBuf>,
        /// Print the history as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One round in full: the change, its rationale and evidence, the diff, the metrics.
    Explain {
        /// The round.
        round: u32,
        /// The manifest [default: the only one with a history in this directory].
        manifest: Option<PathBuf>,
    },
    /// The unified diff between two rounds' manifests.
    Diff {
        /// The first round.
        a: u32,
        /// The second round.
        b: u32,
        /// The manifest [default: the only one with a history in this directory].
        manifest: Option<PathBuf>,
    },
    /// Choose a round as the result (for example from the trade-offs shown when no round
    /// meets every constraint); its manifest becomes NAME.best.yaml.
    Accept {
        /// The round.
        round: u32,
        /// The manifest [default: the only one with a history in this directory].
        manifest: Option<PathBuf>,
    },
    /// Write the HTML report: the request, the held-out test with its intervals and paired
    /// tests, the confound panels, the developer loop's rounds and diffs, the data audit
    /// and provenance, in one self-contained file (inline SVG figures, no network).
    Report {
        /// The manifest to report on [default: the only one with a history in this directory].
        manifest: Option<PathBuf>,
        /// Where to write it [default: NAME.report.html beside the manifest].
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The test opening to show [default: the latest for this manifest].
        #[arg(long, value_name = "ID")]
        test: Option<String>,
    },
    /// Run one stage job (used by the executors; not for direct use).
    #[command(hide = true)]
    StageExec {
        /// The job file the executor wrote.
        job: PathBuf,
    },
}

/// Where the language model is, for `--proposer llm` and `--parser llm`.
#[derive(Debug, Args)]
pub struct LlmArgs {
    /// The language model's API (with `--proposer llm` or `--parser llm`) [default:
    /// ENGINE_LLM_API, else anthropic].
    #[arg(long, value_enum, value_name = "API")]
    pub llm_api: Option<crate::llm::Api>,
    /// The server's base URL [default: ENGINE_LLM_URL, else the API's public endpoint].
    #[arg(long, value_name = "URL")]
    pub llm_url: Option<String>,
    /// The model [default: ENGINE_LLM_MODEL]. The key comes from ENGINE_LLM_API_KEY, else
    /// ANTHROPIC_API_KEY or OPENAI_API_KEY, and is never written anywhere.
    #[arg(long, value_name = "NAME")]
    pub llm_model: Option<String>,
    /// Time limit of one request to the model, in seconds.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub llm_timeout: f64,
}

impl LlmArgs {
    /// The configuration these flags and the environment give; the error says what is
    /// missing.
    pub fn config(&self) -> Result<crate::llm::LlmConfig, String> {
        crate::llm::LlmConfig::resolve(
            self.llm_api,
            self.llm_url.clone(),
            self.llm_model.clone(),
            self.llm_timeout,
        )
    }
}

/// Which parser reads a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ParserKind {
    /// The rule-based parser: no network, its vocabulary in `task/vocab.yaml`.
    Rules,
    /// A language model (Anthropic Messages API, or any OpenAI-compatible server) filling
    /// the TaskSpec schema as a tool; checked, repaired once, and replaced by the rules
    /// when it fails.
    Llm,
}

/// The flags of `engine parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The request, in quotes.
    pub request: String,
    /// Print the TaskSpec as JSON.
    #[arg(long)]
    pub json: bool,
    /// Who reads the request.
    #[arg(long, value_enum, default_value_t = ParserKind::Rules)]
    pub parser: ParserKind,
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// The flags of `engine develop`.
#[derive(Debug, Args)]
pub struct DevelopArgs {
    /// The manifest (YAML) to develop; it needs an `evaluate` stage to score rounds.
    pub manifest: PathBuf,
    /// Rounds after the first run of the manifest as written (the total, counting rounds
    /// an interrupted loop already ran).
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub rounds: u32,
    /// Who proposes each change.
    #[arg(long, value_enum, default_value_t = ProposerKind::Heuristic)]
    pub proposer: ProposerKind,
    /// Seed of the random proposer.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Time limit of one round's run, in minutes; a round past it is recorded as timed out.
    #[arg(long, value_name = "M")]
    pub run_minutes: Option<f64>,
    /// Total time budget, in minutes: no round starts after it.
    #[arg(long, value_name = "M")]
    pub budget_minutes: Option<f64>,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Ask before running each proposal (y: run it, n: record it as declined, e: edit it in
    /// $VISUAL or $EDITOR first, q: stop).
    #[arg(long)]
    pub approve: bool,
    /// Keep the existing history aside and begin a new one.
    #[arg(long)]
    pub restart: bool,
    /// CPU threads for all stages together [default: the machine's cores].
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// GPU ids stages may use, comma-separated, or `none`.
    #[arg(long, value_name = "IDS")]
    pub gpus: Option<String>,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Where stages run.
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// Slurm partition (with `--executor slurm`).
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
}

/// Proposers of `engine develop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProposerKind {
    /// Established techniques in an order driven by the TaskSpec, the audit and the
    /// results so far, each with its evidence (no network).
    Heuristic,
    /// Uniform draws from the policy's action space: a baseline to measure against.
    Random,
    /// A language model (Anthropic Messages API, or any OpenAI-compatible server) answering
    /// with a patch and a rationale; replaced by the heuristic proposer for a round when
    /// its replies fail their checks three times.
    Llm,
}

/// The flags of `engine init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The request, in quotes.
    pub request: String,
    /// The dataset's directory (ISIC 2019, SIIM-ACR, YOLO or folder-per-class).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The manifest to write; dataset paths in it are relative to its directory.
    #[arg(short, long, value_name = "MANIFEST", default_value = "pipeline.yaml")]
    pub out: PathBuf,
    /// Go with the parser's reading where the request leaves something open.
    #[arg(long)]
    pub assume_defaults: bool,
    /// Who reads the request.
    #[arg(long, value_enum, default_value_t = ParserKind::Rules)]
    pub parser: ParserKind,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Replace the manifest if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The flags of `engine test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The manifest (YAML); its stages must have run (`engine apply`).
    pub manifest: PathBuf,
    /// The `classifier.train` or `detector.train` stage whose model is tested (the final
    /// model) [default: the developer loop's best round (or the accepted one), against its
    /// round 0].
    #[arg(long, value_name = "STAGE")]
    pub model: Option<String>,
    /// Another training stage of the same kind on the same dataset (the initial model),
    /// compared with paired tests on the same test images.
    #[arg(long, value_name = "STAGE")]
    pub baseline: Option<String>,
    /// An attribute of the dataset (binary tasks) for the confound analysis [default, without
    /// --model: the one the scoring evaluation analyses].
    #[arg(long, value_name = "NAME")]
    pub confound: Option<String>,
    /// Open the test split again for models other than those it was opened for, giving the
    /// reason (recorded, and shown with the results).
    #[arg(long, value_name = "REASON")]
    pub reopen: Option<String>,
    /// Bootstrap resamples.
    #[arg(long, value_name = "N", default_value_t = engine_core::metrics::DEFAULT_RESAMPLES)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Device for the predictions: `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The flags of `engine metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The kind of task the predictions are for.
    #[arg(long, value_enum)]
    pub task: MetricsTask,
    /// Predictions CSV: `id,label,prob` (binary) or `id,label,CLASS1,CLASS2,...`
    /// (multiclass); an optional `patient` column makes the bootstrap resample patients.
    #[arg(long, value_name = "FILE.csv")]
    pub preds: Option<PathBuf>,
    /// COCO ground truth (detection).
    #[arg(long, value_name = "GT.json")]
    pub gt: Option<PathBuf>,
    /// COCO detections, an array of {image_id, category_id, bbox, score} (detection).
    #[arg(long, value_name = "DETS.json")]
    pub dets: Option<PathBuf>,
    /// Bootstrap resamples for the confidence intervals; 0 for point estimates only.
    #[arg(long, value_name = "N", default_value_t = engine_core::metrics::DEFAULT_RESAMPLES)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Print the metrics as JSON.
    #[arg(long)]
    pub json: bool,
    /// Binary: report the sensitivity at this specificity [default: 0.8].
    #[arg(long, value_name = "X")]
    pub at_specificity: Option<f64>,
    /// Binary: report the specificity at this sensitivity [default: 0.9].
    #[arg(long, value_name = "X")]
    pub at_sensitivity: Option<f64>,
    /// Binary: an attribute column (0/1, or another model's probability, e.g. of a chest
    /// drain) for the confound analysis.
    #[arg(long, value_name = "NAME")]
    pub attribute: Option<String>,
    /// A baseline's predictions for the same cases (detection: its COCO detections on the
    /// images of --gt); adds paired bootstrap tests of every metric (the --preds or --dets
    /// model minus the baseline), DeLong's test of the AUC (binary), and relative
    /// reductions of the confound figures.
    #[arg(long, value_name = "BASELINE")]
    pub compare: Option<PathBuf>,
    /// Detection: score threshold for precision, recall and F1 [default: the F1-optimal one].
    #[arg(long, value_name = "X")]
    pub score_threshold: Option<f64>,
    /// Binary: the decision threshold, fixed beforehand (e.g. on validation) [default:
    /// Youden's point, chosen on these predictions, and said to be].
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
}

/// The flags of `engine synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Which family.
    #[arg(value_enum)]
    pub family: SynthFamily,
    /// The directory to create (it must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Images to write.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub n: usize,
    /// Seed; the same seed writes the same files.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Width and height of the images in pixels.
    #[arg(long, value_name = "PX", default_value_t = 128)]
    pub size: usize,
    /// chest, wrist: share of images with the finding [chest: 0.25, wrist: 0.5].
    #[arg(long, value_name = "P")]
    pub positive_rate: Option<f64>,
    /// chest: P(drain | pneumothorax) [default: 0.6].
    #[arg(long, value_name = "P")]
    pub drain_given_positive: Option<f64>,
    /// chest: P(drain | no pneumothorax) [default: 0.1].
    #[arg(long, value_name = "P")]
    pub drain_given_negative: Option<f64>,
    /// chest, wrist: share of patients fixed as the test split in split.csv (wrist: every
    /// test image keeps its boxes, whatever --box-fraction says) [default: 0, no file].
    #[arg(long, value_name = "F")]
    pub test_fraction: Option<f64>,
    /// chest: P(drain | pneumothorax) in the test split [default: as outside it].
    #[arg(long, value_name = "P")]
    pub test_drain_given_positive: Option<f64>,
    /// chest: P(drain | no pneumothorax) in the test split [default: as outside it].
    #[arg(long, value_name = "P")]
    pub test_drain_given_negative: Option<f64>,
    /// chest: images in the NEATX-like drain set under neatx/ [default: N/4].
    #[arg(long, value_name = "N")]
    pub neatx: Option<usize>,
    /// wrist: share of images whose boxes are kept; the rest have image-level labels only [default: 1].
    #[arg(long, value_name = "F")]
    pub box_fraction: Option<f64>,
    /// derm: share of melanomas drawn like a nevus but for a small dark patch (and half as
    /// many atypical nevi); wrist: how subtle fractures are (fainter, shorter lines, often
    /// without the cortical step, more noise). From 0 (the default) to 1.
    #[arg(long, value_name = "D")]
    pub difficulty: Option<f64>,
}

/// Synthetic dataset families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SynthFamily {
    /// Chest radiographs: SIIM-ACR DICOM + masks, drains.csv, neatx/.
    Chest,
    /// Dermoscopy: ISIC 2019 JPEGs, ground truth and metadata.
    Derm,
    /// Wrist radiographs: YOLO images/, labels/, classes.txt, image_labels.csv.
    Wrist,
}

/// The flags of `engine audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A dataset directory, or a manifest (.yaml) whose datasets to audit.
    pub target: PathBuf,
    /// With a manifest: the dataset to audit [default: every dataset with images].
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// With a directory: its layout [default: guessed from the files].
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// With a directory: an attribute CSV under it, as NAME=FILE (column `image_id` and a
    /// column NAME); repeatable.
    #[arg(long, value_name = "NAME=FILE")]
    pub attribute: Vec<String>,
    /// With a directory: the labels CSV, relative to it.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<String>,
    /// With a directory (csv-images): the label column.
    #[arg(long, value_name = "COLUMN")]
    pub target_column: Option<String>,
    /// With a directory: a CSV `image_id,split` fixing some images' split.
    #[arg(long, value_name = "FILE")]
    pub split_file: Option<String>,
    /// With a directory: the split's seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Also write audit.json and summary.md into this directory (one subdirectory per
    /// dataset when a manifest has several).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the audit as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Graph output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Where `engine apply` runs stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// Child processes on this machine, within --cpus and --gpus.
    Local,
    /// One `sbatch` job per stage on a Slurm cluster; the workspace must be on a shared filesystem.
    Slurm,
}

/// Tasks `engine metrics` evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricsTask {
    /// Two classes: a probability of the positive class per case.
    Binary,
    /// Several classes: a probability per class per case.
    Multiclass,
    /// Object detection: COCO ground truth and detections.
    Detection,
}
