//! `engine plan` and `engine graph`: what changes a stage's key (and so re-runs it) and
//! what must not.

use crate::support::{Workspace, statuses};

const BASE: &str = r#"# The words pipeline.
version: 1
name: words
seed: 3
datasets:
  words: {format: files, root: data}
stages:
  count:
    uses: command
    with:
      run: sh count.sh "$ENGINE_DATASET_words" > "$ENGINE_OUT/counts.txt"
      inputs: [count.sh]
      datasets: [words]
      outputs: [counts.txt]
  top:
    uses: command
    with:
      run: sort -rn "$ENGINE_IN_count/counts.txt" | head -n 1 > "$ENGINE_OUT/top.txt"
      from: [count]
      outputs: [top.txt]
"#;

fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.manifest(BASE)
        .file(
            "count.sh",
            "cat \"$1\"/*.txt | tr ' ' '\\n' | sort | uniq -c\n",
        )
        .file("data/a.txt", "a b a")
        .file("data/b.txt", "c a");
    ws.run(&["apply", "pipeline.yaml"]).code(0);
    ws
}

fn plan_after(ws: &Workspace) -> (Vec<(String, String)>, serde_json::Value) {
    let plan = ws.plan_json();
    (statuses(&plan), plan)
}

fn reasons(plan: &serde_json::Value, id: &str) -> Vec<String> {
    plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

fn all_cached(s: &[(String, String)]) -> bool {
    s.iter().all(|(_, st)| st == "cached")
}

#[test]
fn comments_key_order_whitespace_and_explicit_defaults_do_not_change_keys() {
    let ws = workspace();
    assert!(all_cached(&plan_after(&ws).0));
    let cosmetic = r#"version: 1   # format version
datasets:
    words:   {root: data, format: files}   # reordered keys


stages:
    top:
        with:
            outputs: [top.txt]
            from: [count]
            run: sort -rn "$ENGINE_IN_count/counts.txt" | head -n 1 > "$ENGINE_OUT/top.txt"
            inputs: []
        uses: command
        resources: {cpus: 1, gpus: 0}
    count:
        uses: command
        with:
            datasets: [words]
            outputs: [counts.txt]
            inputs: [count.sh]
            run: sh count.sh "$ENGINE_DATASET_words" > "$ENGINE_OUT/counts.txt"
            env: {}
name: words
seed: 3
"#;
    ws.manifest(cosmetic);
    let (s, plan) = plan_after(&ws);
    assert!(all_cached(&s), "{plan:#}");
}

#[test]
fn resources_and_the_workspace_path_do_not_change_keys() {
    let ws = workspace();
    ws.manifest(&BASE.replace(
        "      outputs: [top.txt]\n",
        "      outputs: [top.txt]\n    resources: {cpus: 2, timeout_minutes: 30, memory_gb: 4}\n",
    ));
    assert!(all_cached(&plan_after(&ws).0));

    let moved = Workspace::new();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", ws.path().display()))
        .arg(moved.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(all_cached(&plan_after(&moved).0));
}

#[test]
fn changed_params_rerun_the_stage_and_everything_downstream() {
    let ws = workspace();
    ws.manifest(&BASE.replace(
        "> \"$ENGINE_OUT/counts.txt\"",
        "| sort > \"$ENGINE_OUT/counts.txt\"",
    ));
    let (s, plan) = plan_after(&ws);
    assert_eq!(
        s,
        [("count".into(), "run".into()), ("top".into(), "run".into())]
    );
    assert_eq!(reasons(&plan, "count"), ["params changed: run"]);
    assert_eq!(reasons(&plan, "top"), ["upstream `count` changed"]);
    let text = ws.run(&["plan", "pipeline.yaml"]).code(0).stdout;
    assert!(
        text.contains("0 cached, 2 to run") && text.contains("params changed: run"),
        "{text}"
    );
}

#[test]
fn changed_input_files_rerun_the_stage() {
    let ws = workspace();
    ws.file(
        "count.sh",
        "cat \"$1\"/*.txt | tr ' ' '\\n' | sort | uniq -c | sort\n",
    );
    let (s, plan) = plan_after(&ws);
    assert_eq!(
        s,
        [("count".into(), "run".into()), ("top".into(), "run".into())]
    );
    assert_eq!(reasons(&plan, "count"), ["input `count.sh` changed"]);
}

#[test]
fn changed_dataset_content_reruns_the_stages_that_read_it() {
    let ws = workspace();
    ws.file("data/c.txt", "b");
    let (s, plan) = plan_after(&ws);
    assert_eq!(s[0], ("count".into(), "run".into()));
    assert_eq!(reasons(&plan, "count"), ["dataset `words` changed"]);
}

#[test]
fn a_changed_seed_reruns_every_stage_that_uses_it() {
    let ws = workspace();
    ws.manifest(&BASE.replace("seed: 3", "seed: 4"));
    let (s, plan) = plan_after(&ws);
    assert_eq!(
        s,
        [("count".into(), "run".into()), ("top".into(), "run".into())]
    );
    assert_eq!(reasons(&plan, "count"), ["seed 3 → 4"]);
    assert_eq!(
        reasons(&plan, "top"),
        ["upstream `count` changed", "seed 3 → 4"]
    );
}

#[test]
fn a_missing_input_is_a_user_error_at_its_line() {
    let ws = workspace();
    std::fs::remove_file(ws.path().join("count.sh")).unwrap();
    let r = ws.run(&["plan", "pipeline.yaml"]).code(2);
    assert!(
        r.stderr
            .starts_with("pipeline.yaml:12:16: stage `count`: input `count.sh` matches no file"),
        "{}",
        r.stderr
    );
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let ws = workspace();
    let dot = ws.run(&["graph", "pipeline.yaml"]).code(0).stdout;
    assert!(
        dot.starts_with("digraph \"words\" {") && dot.contains("\"count\" -> \"top\";"),
        "{dot}"
    );
    let mermaid = ws
        .run(&["graph", "pipeline.yaml", "--format", "mermaid"])
        .code(0)
        .stdout;
    assert!(
        mermaid.starts_with("flowchart LR") && mermaid.contains("count --> top"),
        "{mermaid}"
    );
}

#[test]
fn pretrained_weights_are_an_input_whose_content_is_in_the_key() {
    let ws = Workspace::new();
    ws.manifest(
        r#"version: 1
name: weights
datasets:
  derm: {format: folder-per-class, root: data}
stages:
  train:
    uses: classifier.train
    with: {dataset: derm, backbone: resnet18, pretrained: weights/resnet18.safetensors}
"#,
    );
    std::fs::create_dir_all(ws.path().join("data/a")).unwrap();
    std::fs::create_dir_all(ws.path().join("data/b")).unwrap();
    let r = ws.run(&["plan", "pipeline.yaml"]).code(2);
    assert!(
        r.stderr.starts_with(
            "pipeline.yaml:8:59: stage `train`: `pretrained` `weights/resnet18.safetensors` matches no file"
        ),
        "{}",
        r.stderr
    );
    std::fs::create_dir_all(ws.path().join("weights")).unwrap();
    std::fs::write(ws.path().join("weights/resnet18.safetensors"), b"one").unwrap();
    let first = ws.run(&["plan", "pipeline.yaml", "--json"]).code(0).stdout;
    std::fs::write(ws.path().join("weights/resnet18.safetensors"), b"two").unwrap();
    let second = ws.run(&["plan", "pipeline.yaml", "--json"]).code(0).stdout;
    let key = |s: &str| {
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        v["stages"][0]["digest"].as_str().unwrap().to_owned()
    };
    assert_ne!(key(&first), key(&second));
}
