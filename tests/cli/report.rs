//! `engine report`: the HTML report of a developed and tested model, checked as text and
//! rendered by headless Chromium (Debian's package; `scripts/test.sh` installs it and sets
//! `ENGINE_REQUIRE_CHROMIUM=1`, so that CI fails rather than skips when it is missing).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::develop::MANIFEST;
use crate::support::chest_workspace;

/// The report's colours for the final model, the initial model and kept rounds.
const MODEL: [u8; 3] = [0x0b, 0x61, 0xd6];
const BASELINE: [u8; 3] = [0xe8, 0x59, 0x0c];
const GOOD: [u8; 3] = [0x1a, 0x7f, 0x37];

const FIGURES: [&str; 7] = [
    "fig-reliability",
    "fig-roc",
    "fig-compare",
    "fig-subgroups",
    "fig-fp-share",
    "fig-correlation",
    "fig-rounds",
];

#[test]
fn the_report_holds_the_test_the_confound_the_rounds_the_audit_and_provenance() {
    let ws = chest_workspace(MANIFEST, 160, 2);
    // Nothing has run: nothing to report, and no file written.
    let empty = ws.run(&["report", "pipeline.yaml"]).code(2);
    assert!(
        empty.stderr.contains("nothing to report") && empty.stderr.contains("engine apply"),
        "{}",
        empty.stderr
    );
    assert!(!ws.path().join("pipeline.report.html").exists());

    ws.run(&["develop", "pipeline.yaml", "--rounds", "1", "--plain"])
        .code(0);
    // Round 1 is chosen whatever the loop decided, so the test has a baseline to compare.
    ws.run(&["accept", "1", "pipeline.yaml"]).code(0);
    ws.run(&["test", "pipeline.yaml", "--bootstrap", "200"])
        .code(0);
    let r = ws.run(&["report"]).code(0);
    assert!(r.stdout.contains("pipeline.report.html"), "{}", r.stdout);
    let html = ws.read("pipeline.report.html");

    // Self-contained: no script, no address, nothing to fetch.
    for banned in ["<script", "http:", "https:", "src=", "href=", "url("] {
        assert!(!html.contains(banned), "the report contains `{banned}`");
    }
    for id in FIGURES {
        let start = html
            .find(&format!("<figure id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no {id}"));
        let end = start + html[start..].find("</figure>").unwrap();
        assert!(html[start..end].contains("<svg"), "{id} has no SVG");
    }
    // The answer comes first: the request's requirements with their verdicts on the test,
    // before the request itself and the technical sections, with the terms explained.
    let answer = html
        .find("<section id=\"answer\">")
        .expect("no answer section");
    assert!(answer < html.find("<section id=\"summary\">").unwrap());
    assert!(answer < html.find("<section id=\"test\">").unwrap());
    let answer = &html[answer..answer + html[answer..].find("</section>").unwrap()];
    assert!(answer.contains("Does the model do what was asked?"));
    assert!(answer.contains("On the sealed test split"), "{answer}");
    assert!(
        answer.contains("the positive class is <code>pneumothorax</code>"),
        "{answer}"
    );
    assert!(
        answer.contains("fixed on validation and applied unchanged"),
        "{answer}"
    );
    assert_eq!(
        answer.matches("<td class=\"v v-").count(),
        2,
        "AUC and the drain: {answer}"
    );
    assert!(answer.contains("Tells pneumothorax from its absence better than chance"));
    assert!(answer.contains("Does not rely on chest drain"));
    assert!(
        answer.contains("for always predicting the prevalence"),
        "{answer}"
    );
    assert!(
        answer.contains("the raw outputs had a Brier score"),
        "{answer}"
    );
    assert!(
        answer.matches("class=\"bin\"").count() >= 2,
        "reliability dots"
    );
    for term in [
        "AUC",
        "Partial correlation",
        "Youden",
        "Expected calibration error",
    ] {
        assert!(
            answer.contains(&format!("<dt>{term}")),
            "{term} is not explained"
        );
    }
    // The test: both models, their intervals and the paired tests.
    assert!(html.contains("round 1 (accepted)") && html.contains("round 0 (initial)"));
    assert!(
        html.contains("paired bootstrap p ="),
        "no paired test in the headline"
    );
    assert!(html.contains("DeLong"));
    assert_eq!(html.matches("class=\"curve\"").count(), 2, "two ROC curves");
    // Bars: a model bar and a baseline bar per metric, each with its interval.
    let bars = html.matches("class=\"bar\"").count();
    assert!(bars >= 14 && bars.is_multiple_of(2), "{bars} bars");
    assert!(html.matches("class=\"whisker\"").count() >= bars);
    // The confound: four label x attribute subgroups for two models.
    assert_eq!(html.matches("<g class=\"box\">").count(), 8);
    assert!(html.contains("partial correlation"));
    // The rounds: a point each, the diff of round 1, the request.
    assert_eq!(html.matches("class=\"round\"").count(), 2);
    assert!(html.contains("<span class=\"add\">+"), "no diff lines");
    assert!(html.contains("round 1 (accepted)"));
    // The audit found the drain, and provenance names the runtime and the opening.
    assert!(html.contains("id=\"audit\"") && html.contains("shortcut"));
    assert!(
        html.contains("libtorch 2.") && html.contains("device cpu"),
        "no runtime"
    );
    let seal = ws.read(".engine/test-seal.jsonl");
    let opening: serde_json::Value = serde_json::from_str(seal.lines().next().unwrap()).unwrap();
    assert!(html.contains(opening["id"].as_str().unwrap()));
    // The test reports at the operating point the scoring evaluation asks for.
    let id = opening["id"].as_str().unwrap();
    let metrics: serde_json::Value =
        serde_json::from_str(&ws.read(&format!(".engine/test/{id}/metrics.json"))).unwrap();
    assert_eq!(metrics["operating_points"]["at_specificity"], 0.7);
    assert_eq!(opening["manifest"], "pipeline.yaml");

    // It overwrites its own report, never another file.
    ws.run(&["report", "pipeline.yaml"]).code(0);
    let manifest = ws.read("pipeline.yaml");
    let bad = ws
        .run(&["report", "pipeline.yaml", "-o", "pipeline.yaml"])
        .code(2);
    assert!(bad.stderr.contains("not a report"), "{}", bad.stderr);
    assert_eq!(ws.read("pipeline.yaml"), manifest);
    let bad = ws
        .run(&["report", "pipeline.yaml", "--test", "nope"])
        .code(2);
    assert!(
        bad.stderr.contains(opening["id"].as_str().unwrap()),
        "{}",
        bad.stderr
    );
    ws.run(&["report", "missing.yaml"]).code(2);

    render(&ws.path().join("pipeline.report.html"));
}

/// Opens the report in headless Chromium: the parsed page has every figure, and the
/// screenshot shows the models' colours, so the SVG really drew.
fn render(report: &Path) {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("ENGINE_REQUIRE_CHROMIUM").is_none(),
            "ENGINE_REQUIRE_CHROMIUM is set but Chromium is missing (apt-get install chromium)"
        );
        eprintln!("skipping the browser check: Chromium is not installed");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", report.canonicalize().unwrap().display());
    let browser = |extra: &[&str]| {
        let out = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let dom = String::from_utf8(browser(&["--dump-dom"]).stdout).unwrap();
    for id in FIGURES {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "the browser's page lacks {id}"
        );
    }
    assert!(dom.matches("<svg").count() >= FIGURES.len());

    let shot = report.with_extension("png");
    browser(&[
        "--window-size=1100,6000",
        &format!("--screenshot={}", shot.display()),
    ]);
    let img = image::open(&shot).unwrap().to_rgb8();
    let count = |c: [u8; 3]| {
        img.pixels()
            .filter(|p| p.0.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 6))
            .count()
    };
    let (model, baseline, good) = (count(MODEL), count(BASELINE), count(GOOD));
    // Bars alone fill thousands of pixels in each model's colour.
    assert!(
        model > 2000 && baseline > 2000 && good > 100,
        "the rendered report lacks its figures: {model} model, {baseline} baseline, {good} kept-round pixels"
    );
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENGINE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}
