#!/usr/bin/env python3
"""bootstrap_auc.py: helper of bootstrap-auc.sh (data, the scikit-learn loop, timing of the
engine command, and the report). Run it through bootstrap-auc.sh."""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def generate(args):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    y = (rng.random(args.n) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(1.2 * y + rng.normal(0, 1, args.n))))
    with open(args.out, "w") as f:
        f.write("id,label,prob\n")
        for i in range(args.n):
            f.write(f"c{i:05d},{int(y[i])},{float(p[i])!r}\n")


def sklearn_loop(args):
    """The peer: roc_auc_score on each of the resamples (indices drawn with numpy)."""
    import numpy as np
    import sklearn
    from sklearn.metrics import roc_auc_score

    y, p = [], []
    with open(args.preds) as f:
        next(f)
        for line in f:
            _, label, prob = line.rstrip("\n").split(",")
            y.append(int(label))
            p.append(float(prob))
    y, p = np.array(y), np.array(p)
    auc = roc_auc_score(y, p)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    aucs = []
    for _ in range(args.resamples):
        idx = rng.integers(0, len(y), len(y))
        aucs.append(roc_auc_score(y[idx], p[idx]))
    seconds = time.perf_counter() - t
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    json.dump({"seconds": seconds, "auc": auc, "ci": [lo, hi], "sklearn": sklearn.__version__,
               "numpy": np.__version__, "python": platform.python_version()}, sys.stdout)


def time_cmd(args):
    """Median and min wall time of a command (a whole process: start, CSV, bootstrap, JSON)."""
    times, out = [], None
    for i in range(args.warmup + args.runs):
        t = time.perf_counter()
        r = subprocess.run(args.cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"{' '.join(args.cmd)} failed ({r.returncode}):\n{r.stderr}")
        if i >= args.warmup:
            times.append(dt)
        out = r.stdout
    json.dump({"median": statistics.median(times), "min": min(times), "output": json.loads(out)}, sys.stdout)


def report(args):
    sk = json.load(open(args.sklearn))
    ex = json.load(open(args.example))
    cmd = json.load(open(args.command))
    engine_auc = cmd["output"]["metrics"]["auc"]
    auc_diff = abs(ex["auc"] - sk["auc"])
    ratio_auc = sk["seconds"] / ex["auc_seconds_median"]
    ratio_all = sk["seconds"] / ex["all_metrics_seconds_median"]
    ratio_cmd = sk["seconds"] / cmd["median"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.processor())
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "engine": args.engine_version, "cpu": cpu, "nproc": os.cpu_count(),
        "loadavg_before": args.load_before, "loadavg_after": " ".join(open("/proc/loadavg").read().split()[:3]),
        "kernel": platform.platform(),
    }
    target_ok = ratio_auc >= 50 and ex["auc_seconds_median"] < 1.0 and auc_diff <= 1e-9
    results = {"n": ex["n"], "resamples": ex["resamples"], "sklearn": sk, "engine_in_process": ex,
               "engine_command": {k: cmd[k] for k in ("median", "min")},
               "engine_command_auc": engine_auc,
               "auc_abs_diff": auc_diff, "ratios": {"auc": ratio_auc, "all_metrics": ratio_all, "command": ratio_cmd},
               "targets_met": target_ok, "environment": env}
    os.makedirs(args.out_dir, exist_ok=True)
    json.dump(results, open(os.path.join(args.out_dir, "bootstrap-auc.json"), "w"), indent=2)
    f = lambda x: f"{x:.4f}"
    md = f"""# bootstrap-auc benchmark (latest run)

A 95% percentile bootstrap of the ROC AUC with {ex['resamples']} resamples over {ex['n']} binary
predictions: the engine against a scikit-learn loop (`roc_auc_score` on each resample, indices
drawn with numpy), in one run. The engine's times are the median of {ex['repeats']} repetitions
({ex['threads']} threads); scikit-learn's loop runs once.

Written by `bench/bootstrap-auc.sh`; rerun it to refresh this file and `bootstrap-auc.json`.

| what | seconds | scikit-learn / this |
|---|---:|---:|
| scikit-learn {sk['sklearn']}: loop of `roc_auc_score` | {f(sk['seconds'])} | 1x |
| engine, AUC bootstrap in-process (`BinaryData::bootstrap_auc`, sort included) | {f(ex['auc_seconds_median'])} | {ratio_auc:.0f}x |
| engine, all 8 binary metrics bootstrapped in-process | {f(ex['all_metrics_seconds_median'])} | {ratio_all:.0f}x |
| `engine metrics --task binary --json` (whole process: CSV, all metrics, JSON), median of {args.runs} | {f(cmd['median'])} | {ratio_cmd:.0f}x |

| AUC | point | 95% CI |
|---|---:|---|
| scikit-learn | {sk['auc']:.12f} | [{sk['ci'][0]:.4f}, {sk['ci'][1]:.4f}] (its own resamples) |
| engine | {ex['auc']:.12f} | [{ex['ci'][0]:.4f}, {ex['ci'][1]:.4f}] |

Point AUCs differ by {auc_diff:.1e}.

Targets (DESIGN.md section 12):
- [{'x' if ex['auc_seconds_median'] < 1.0 else ' '}] 2,000-resample bootstrap of the AUC over 10,000 predictions well under a second
- [{'x' if ratio_auc >= 50 else ' '}] at least 50 times faster than the scikit-learn loop
- [{'x' if auc_diff <= 1e-9 else ' '}] AUC equal to scikit-learn's within 1e-9

Environment:
- date: {env['date']}
- engine: {env['engine']} (release build)
- python {sk['python']}, numpy {sk['numpy']}, scikit-learn {sk['sklearn']}
- machine: {cpu}, {env['nproc']} cores, {env['kernel']}; load average {env['loadavg_before']} before, {env['loadavg_after']} after (other work on the machine inflates wall times)
"""
    open(os.path.join(args.out_dir, "bootstrap-auc.md"), "w").write(md)
    print(f"scikit-learn loop:                {sk['seconds']:.4f} s")
    print(f"engine AUC bootstrap (in-process): {ex['auc_seconds_median']:.4f} s   ratio {ratio_auc:.0f}x")
    print(f"engine all binary metrics:         {ex['all_metrics_seconds_median']:.4f} s   ratio {ratio_all:.0f}x")
    print(f"engine metrics command:            {cmd['median']:.4f} s   ratio {ratio_cmd:.0f}x")
    print(f"AUC difference: {auc_diff:.1e}; targets {'met' if target_ok else 'MISSED'}")
    if args.strict and not target_ok:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("generate")
    g.add_argument("out")
    g.add_argument("--n", type=int, default=10000)
    g.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("sklearn")
    s.add_argument("preds")
    s.add_argument("--resamples", type=int, default=2000)
    t = sub.add_parser("time")
    t.add_argument("--runs", type=int, default=5)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("cmd", nargs=argparse.REMAINDER)
    r = sub.add_parser("report")
    for a in ("--sklearn", "--example", "--command", "--out-dir", "--engine-version", "--load-before"):
        r.add_argument(a, required=True)
    r.add_argument("--runs", type=int, default=5)
    r.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    if args.what == "time" and args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    {"generate": generate, "sklearn": sklearn_loop, "time": time_cmd, "report": report}[args.what](args)


if __name__ == "__main__":
    main()
