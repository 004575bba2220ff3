#!/usr/bin/env python3
"""Helper of bench/cached-plan.sh: generates the workspaces, times commands when
hyperfine is missing, checks no-op outputs and writes the results table.

Standard library only, so that it runs with any Python 3.9+ (the system one or the
benchmark's virtual environment).

Subcommands:
  generate WORK --files N       dataset + engine manifest + dvc.yaml under WORK
  time OUT.json --runs N --warmup W --cwd DIR --name NAME --cmd 'CMD'   (fallback timer)
  check-engine-apply OUTPUT_FILE STAGES   the no-op apply ran nothing
  check-engine-plan OUTPUT_FILE STAGES    the plan has every stage cached
  check-dvc-repro OUTPUT_FILE             the no-op repro ran nothing
  check-dvc-status OUTPUT_FILE            dvc status reports nothing changed
  report --env ENV.json --out-dir DIR TIMINGS.json...   table + results files
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Bump when the generated dataset or pipelines change, so stale workspaces are rebuilt.
GENERATOR_VERSION = 1
CLASSES = 5
FILES_PER_DIR = 100
# Every generated file and directory gets this mtime (2024-01-01T00:00:00Z): the
# dataset is byte-for-byte and stamp-for-stamp the same on every run, and well
# outside the engine's "racy clean" window, as a real dataset would be.
FIXED_MTIME = 1_704_067_200

# The six stages, as one-line shell commands (DVC runs each line of a multi-line
# `cmd` as a separate command, so no line breaks), with placeholders:
#   {data}      the dataset's root
#   {out}       the directory the stage writes its outputs into
#   {in_<id>}   the output directory of upstream stage <id>
# (id, reads dataset?, upstream stages, outputs, command)
STAGES = [
    (
        "index",
        True,
        [],
        ["index.tsv"],
        # one line per image: relative path, class
        "(cd {data} && find . -type f -name '*.pgm') | LC_ALL=C sort"
        " | awk -F/ -v OFS='\\t' '{{print $0, $2}}' > {out}/index.tsv",
    ),
    (
        "split",
        False,
        ["index"],
        ["train.txt", "val.txt"],
        "awk -v out={out} 'NR % 5 == 0 {{print > (out \"/val.txt\"); next}}"
        " {{print > (out \"/train.txt\")}}' {in_index}/index.tsv",
    ),
    (
        "features_a",
        True,
        ["split"],
        ["checksums.txt"],
        # reads every training image
        "cut -f1 {in_split}/train.txt | (cd {data} && xargs cksum) > {out}/checksums.txt",
    ),
    (
        "features_b",
        True,
        ["split"],
        ["sizes.txt", "classes.txt"],
        # reads every validation image; counts validation images per class
        "cut -f1 {in_split}/val.txt | (cd {data} && xargs wc -c) | grep -v ' total$' > {out}/sizes.txt && "
        "awk -F'\\t' '{{n[$2]++}} END {{for (c in n) print c, n[c]}}' {in_split}/val.txt"
        " | LC_ALL=C sort > {out}/classes.txt",
    ),
    (
        "train",
        False,
        ["split", "features_a"],
        ["model.txt"],
        # a "model": a histogram of checksums modulo 97, plus the training-set size
        "awk '{{h[$1 % 97]++}} END {{for (k in h) print k, h[k]}}' {in_features_a}/checksums.txt"
        " | LC_ALL=C sort -n > {out}/model.txt && "
        "echo \"n_train $(wc -l < {in_split}/train.txt)\" >> {out}/model.txt",
    ),
    (
        "evaluate",
        False,
        ["train", "features_b"],
        ["metrics.json"],
        "awk 'FNR == NR {{b++; next}} {{t += $1; n++}}"
        " END {{printf \"{{\\\"buckets\\\": %d, \\\"n_val\\\": %d, \\\"mean_bytes\\\": %.3f}}\\n\", b, n, t / n}}'"
        " {in_train}/model.txt {in_features_b}/sizes.txt > {out}/metrics.json",
    ),
]


def image_bytes(i: int) -> bytes:
    """A tiny, deterministic 16x16 8-bit PGM image (271 bytes)."""
    pixels = b"".join(hashlib.blake2b(f"img{i}:{k}".encode(), digest_size=64).digest() for k in range(4))
    return b"P5\n16 16\n255\n" + pixels


def generate_dataset(root: Path, n_files: int) -> None:
    stamp = root.parent / f".{root.name}.generated"
    want = f"generator {GENERATOR_VERSION} files {n_files}\n"
    if stamp.is_file() and stamp.read_text() == want:
        return
    if root.exists():
        shutil.rmtree(root)
    per_class = -(-n_files // CLASSES)
    dirs = set()
    for i in range(n_files):
        c, j = divmod(i, per_class)
        d = root / f"class_{c}" / f"shard_{j // FILES_PER_DIR:03d}"
        if d not in dirs:
            d.mkdir(parents=True, exist_ok=True)
            dirs.add(d)
        p = d / f"img_{i:05d}.pgm"
        p.write_bytes(image_bytes(i))
        os.utime(p, (FIXED_MTIME, FIXED_MTIME))
    for d in sorted(dirs | {d.parent for d in dirs}, key=lambda p: -len(p.parts)):
        os.utime(d, (FIXED_MTIME, FIXED_MTIME))
    # The stamp lives beside the dataset, not in it, so the dataset is exactly n files.
    stamp.write_text(want)


def fill(cmd: str, data: str, out: str, inputs: dict[str, str]) -> str:
    return cmd.format(data=data, out=out, **{f"in_{k}": v for k, v in inputs.items()})


def block(text: str, indent: int) -> str:
    pad = " " * indent
    return "\n".join(pad + line for line in text.splitlines())


def engine_manifest(n_files: int) -> str:
    lines = [
        "# Generated by bench/cached_plan.py: the cached-plan benchmark's pipeline.",
        "version: 1",
        "name: cached-plan-bench",
        f"description: Six command stages over a {n_files}-file dataset (index, split, two feature stages, train, evaluate).",
        "datasets:",
        "  images:",
        "    format: files",
        "    root: data/images",
        "stages:",
    ]
    for sid, reads_data, ups, outs, cmd in STAGES:
        run = fill(
            cmd,
            '"$ENGINE_DATASET_images"',
            '"$ENGINE_OUT"',
            {u: f'"$ENGINE_IN_{u}"' for u in ups},
        )
        lines += [f"  {sid}:", "    uses: command", "    with:", "      run: |-", block(run, 8)]
        if ups:
            lines.append(f"      from: [{', '.join(ups)}]")
        if reads_data:
            lines.append("      datasets: [images]")
        lines.append(f"      outputs: [{', '.join(outs)}]")
    return "\n".join(lines) + "\n"


def dvc_yaml() -> str:
    lines = ["# Generated by bench/cached_plan.py: the same pipeline as pipeline.yaml, for DVC.", "stages:"]
    for sid, reads_data, ups, outs, cmd in STAGES:
        up_outs = {u: next(s for s in STAGES if s[0] == u) for u in ups}
        run = fill(cmd, "data/images", f"out/{sid}", {u: f"out/{u}" for u in ups})
        deps = (["data/images"] if reads_data else []) + [
            f"out/{u}/{o}" for u in ups for o in up_outs[u][3]
        ]
        lines += [f"  {sid}:", "    cmd: |-", block(f"mkdir -p out/{sid} && {run}", 6), "    deps:"]
        lines += [f"      - {d}" for d in deps]
        lines.append("    outs:")
        lines += [f"      - out/{sid}/{o}" for o in outs]
    return "\n".join(lines) + "\n"


def copy_dataset(src: Path, dst: Path) -> None:
    """The DVC workspace's copy of the dataset: hard links to the same files (both
    tools only read the dataset; the stat results are identical), made in a second."""
    stamp_src = src.parent / f".{src.name}.generated"
    stamp_dst = dst.parent / f".{dst.name}.generated"
    if stamp_dst.is_file() and stamp_dst.read_text() == stamp_src.read_text():
        return
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, copy_function=os.link)
    for d, _, _ in os.walk(dst, topdown=False):
        os.utime(d, (FIXED_MTIME, FIXED_MTIME))
    shutil.copy2(stamp_src, stamp_dst)


def cmd_generate(args: argparse.Namespace) -> None:
    work = Path(args.work).resolve()
    eng, dvc = work / "engine", work / "dvc"
    # Tool state is always rebuilt from nothing; the dataset is kept if it matches.
    for ws, state in ((eng, [".engine", "pipeline.yaml", "pipeline.lock"]),
                      (dvc, [".git", ".dvc", ".dvcignore", ".gitignore", "dvc.yaml", "dvc.lock", "out"])):
        ws.mkdir(parents=True, exist_ok=True)
        for name in state:
            p = ws / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    t0 = time.perf_counter()
    generate_dataset(eng / "data" / "images", args.files)
    copy_dataset(eng / "data" / "images", dvc / "data" / "images")
    (eng / "pipeline.yaml").write_text(engine_manifest(args.files))
    (dvc / "dvc.yaml").write_text(dvc_yaml())
    n = sum(len(f) for _, _, f in os.walk(eng / "data" / "images"))
    if n != args.files:
        sys.exit(f"generate: expected {args.files} dataset files, found {n}")
    print(f"workspaces ready under {work} ({n} files each, {time.perf_counter() - t0:.1f}s)")


def cmd_time(args: argparse.Namespace) -> None:
    """A fallback for hyperfine: same JSON shape (results[].command/median/min/times)."""
    cmd = shlex.split(args.cmd)

    def once() -> float:
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=args.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"time: `{' '.join(cmd)}` exited with {r.returncode}")
        return dt

    for _ in range(args.warmup):
        once()
    times = [once() for _ in range(args.runs)]
    result = {
        "command": args.name,
        "mean": statistics.mean(times),
        "stddev": statistics.stdev(times) if len(times) > 1 else 0.0,
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "times": times,
    }
    Path(args.out).write_text(json.dumps({"results": [result]}, indent=2))
    print(f"  {args.name:<24} median {result['median']:.4f}s  min {result['min']:.4f}s")


def fail(msg: str, text: str) -> None:
    sys.stderr.write(f"CHECK FAILED: {msg}\n--- output ---\n{text}\n--------------\n")
    sys.exit(1)


def cmd_check(args: argparse.Namespace) -> None:
    text = Path(args.output).read_text(errors="replace")
    n = args.stages
    if args.what == "engine-apply":
        # run <id> succeeded in 0.0s: 0 ran, 6 cached, 0 failed, 0 skipped
        m = re.search(r"succeeded in [0-9.]+s: (\d+) ran, (\d+) cached, (\d+) failed, (\d+) skipped", text)
        if not m:
            fail("`engine apply` printed no run summary", text)
        ran, cached, failed, skipped = map(int, m.groups())
        if ran or failed or skipped or cached != n:
            fail(f"the no-op `engine apply` was not a no-op: {ran} ran, {cached}/{n} cached", text)
    elif args.what == "engine-plan":
        m = re.search(r"(\d+) stages?, (\d+) cached, (\d+) to run", text)
        if not m or int(m.group(2)) != n or int(m.group(3)) != 0:
            fail(f"`engine plan` does not show all {n} stages cached", text)
    elif args.what == "dvc-repro":
        if re.search(r"Running stage", text):
            fail("the no-op `dvc repro` ran a stage", text)
        skipped = len(re.findall(r"didn't change, skipping", text))
        if skipped != n or "up to date" not in text:
            fail(f"`dvc repro` skipped {skipped}/{n} stages or did not report 'up to date'", text)
    elif args.what == "dvc-status":
        if "Data and pipelines are up to date" not in text:
            fail("`dvc status` reports changes", text)
    print(f"  ok: {args.what} is a no-op")


def load_results(paths: list[str]) -> dict[str, dict]:
    out = {}
    for p in paths:
        for r in json.loads(Path(p).read_text())["results"]:
            times = r["times"]
            out[r["command"]] = {
                "median_s": statistics.median(times),
                "min_s": min(times),
                "mean_s": statistics.mean(times),
                "max_s": max(times),
                "runs": len(times),
            }
    return out


ROWS = [
    ("engine", "engine --version", "engine --version"),
    ("engine", "engine plan", "engine plan pipeline.yaml"),
    ("engine", "engine apply", "engine apply pipeline.yaml  (no-op)"),
    ("dvc", "dvc status", "dvc status"),
    ("dvc", "dvc repro", "dvc repro  (no-op)"),
]
PAIRS = [("dvc status / engine plan", "dvc status", "engine plan"),
         ("dvc repro / engine apply", "dvc repro", "engine apply")]
TARGET_S = 0.3
TARGET_RATIO = 10.0


def cmd_report(args: argparse.Namespace) -> None:
    env = json.loads(Path(args.env).read_text())
    res = load_results(args.timings)
    missing = [name for _, name, _ in ROWS if name not in res]
    if missing:
        sys.exit(f"report: no timings for {missing}")
    ratios = {label: res[a]["median_s"] / res[b]["median_s"] for label, a, b in PAIRS}
    targets = {
        "engine plan median < 0.3 s": res["engine plan"]["median_s"] < TARGET_S,
        "engine apply median < 0.3 s": res["engine apply"]["median_s"] < TARGET_S,
        **{f"{label} >= 10": ratios[label] >= TARGET_RATIO for label, _, _ in PAIRS},
    }
    doc = {
        "benchmark": "cached-plan",
        "description": (
            f"Fully cached 6-stage pipeline of `command` stages over a {env['files']}-file dataset: "
            "`engine plan` and a no-op `engine apply` against `dvc status` and a no-op `dvc repro` "
            "on the equivalent dvc.yaml. Median (and min) wall-clock seconds over "
            f"{env['runs']} runs after {env['warmup']} warm-up."
        ),
        "environment": env,
        "timings": {name: res[name] for _, name, _ in ROWS},
        "ratios_of_medians": ratios,
        "targets": {"max_seconds": TARGET_S, "min_ratio": TARGET_RATIO, "met": targets},
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cached-plan.json").write_text(json.dumps(doc, indent=2) + "\n")

    table = ["| tool | command | median (s) | min (s) |", "|---|---|---:|---:|"]
    for tool, name, label in ROWS:
        r = res[name]
        table.append(f"| {tool} | `{label.split('  ')[0]}`{' (no-op)' if 'no-op' in label else ''} "
                     f"| {r['median_s']:.4f} | {r['min_s']:.4f} |")
    ratio_lines = [f"| {label} | {v:.1f}x |" for label, v in ratios.items()]
    target_lines = [f"- [{'x' if ok else ' '}] {t}" for t, ok in targets.items()]
    e = env
    md = "\n".join([
        "# cached-plan benchmark (latest run)",
        "",
        doc["description"],
        "",
        "Written by `bench/cached-plan.sh`; rerun it to refresh this file and `cached-plan.json`.",
        "",
        *table,
        "",
        "| ratio of medians | |",
        "|---|---:|",
        *ratio_lines,
        "",
        "Targets:",
        *target_lines,
        "",
        "Environment:",
        f"- date: {e['date']}",
        f"- engine: {e['engine_version']}, built with {e['engine_build']}",
        f"- dvc: {e['dvc_version']} (Python {e['python_version']}, {e['dvc_scm']})",
        f"- timer: {e['timer']}",
        f"- machine: {e['cpu']}, {e['nproc']} cores, {e['kernel']}; load average "
        f"{e.get('loadavg_before', '?')} before, {e.get('loadavg_after', '?')} after (other work on the machine inflates wall times)",
        f"- dataset: {e['files']} files, workspaces under {e['work']}",
        "",
    ])
    (out_dir / "cached-plan.md").write_text(md)

    print()
    print(f"{'tool':<7} {'command':<38} {'median s':>9} {'min s':>9}")
    for tool, name, label in ROWS:
        r = res[name]
        print(f"{tool:<7} {label:<38} {r['median_s']:>9.4f} {r['min_s']:>9.4f}")
    print()
    for label, v in ratios.items():
        print(f"{label:<28} {v:>7.1f}x")
    print()
    for t, ok in targets.items():
        print(f"  {'PASS' if ok else 'MISS'}  {t}")
    print(f"\nwrote {out_dir / 'cached-plan.json'} and {out_dir / 'cached-plan.md'}")
    if args.strict and not all(targets.values()):
        sys.exit("report: a target was missed (BENCH_STRICT=1)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="sub", required=True)
    g = sub.add_parser("generate")
    g.add_argument("work")
    g.add_argument("--files", type=int, default=25_000)
    g.set_defaults(func=cmd_generate)
    t = sub.add_parser("time")
    t.add_argument("out")
    t.add_argument("--runs", type=int, default=10)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--cwd", default=".")
    t.add_argument("--name", required=True)
    t.add_argument("--cmd", required=True, help="the command line, split with shlex")
    t.set_defaults(func=cmd_time)
    for what in ("engine-apply", "engine-plan", "dvc-repro", "dvc-status"):
        c = sub.add_parser(f"check-{what}")
        c.add_argument("output")
        c.add_argument("stages", type=int, nargs="?", default=len(STAGES))
        c.set_defaults(func=cmd_check, what=what)
    r = sub.add_parser("report")
    r.add_argument("--env", required=True)
    r.add_argument("--out-dir", required=True)
    r.add_argument("--strict", action="store_true")
    r.add_argument("timings", nargs="+")
    r.set_defaults(func=cmd_report)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
