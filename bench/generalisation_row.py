"""Rows and summary of bench/develop-generalisation.sh.

Row:     python3 generalisation_row.py TASK SEED SHUFFLED SECONDS HISTORY.json TEST.json
Summary: python3 generalisation_row.py --summary ROWS.jsonl SECONDS OUT.md OUT.json
"""

import json
import statistics
import sys


def row(task, seed, shuffled, secs, history, test):
    h = json.load(open(history))
    t = json.load(open(test))
    rounds = h["rounds"]
    done = [r for r in rounds[1:] if r["state"] == "done"]
    kept = [r for r in rounds[1:] if r["kept"]]
    # Kept for leaning less on the confounder rather than for a gain in the objective.
    for_reliance = [r for r in kept if r["verdict"].startswith("leans significantly less")]
    chosen = h.get("chosen") or 0
    metric = rounds[0].get("metric") or "auc"
    first = rounds[0].get("value")
    best = next((r.get("value") for r in rounds if r["round"] == chosen), first)
    out = {
        "task": task,
        "seed": int(seed),
        "shuffled": shuffled == "1",
        "seconds": int(secs),
        "metric": metric,
        "rounds_done": len(done),
        "kept": len(kept),
        "kept_for_objective": len(kept) - len(for_reliance),
        "chosen": chosen,
        "val_first": first,
        "val_best": best,
        "val_gain": (best - first) if best is not None and first is not None else None,
        "validation_looks": h.get("validation_looks"),
    }
    comparison = t.get("comparison") or {}
    paired = (comparison.get("paired") or {}).get(metric)
    delong = comparison.get("delong")
    if metric == "auc" and delong:
        d = delong["difference"]
        se = delong["se"]
        out.update(test_diff=d, test_ci=[d - 1.96 * se, d + 1.96 * se], test_p=delong["p_value"], test_method="DeLong")
    elif paired:
        out.update(test_diff=paired["difference"], test_ci=paired["ci"], test_p=paired["p_value"], test_method="paired bootstrap")
    else:
        out.update(test_diff=0.0 if chosen == 0 else None, test_ci=None, test_p=None, test_method=None)
    ci = out["test_ci"]
    if chosen == 0:
        out["agreement"] = "nothing claimed"
    elif ci and ci[0] is not None and ci[0] > 0:
        out["agreement"] = "holds"
    elif ci and ci[1] is not None and ci[1] < 0:
        out["agreement"] = "reversed"
    else:
        out["agreement"] = "not significant"
    m = t.get("metrics") or {}
    pc = (m.get("confound/partial_correlation") or {}).get("value")
    control = ((t.get("control") or {}).get("paired") or {}).get("confound/partial_correlation") or {}
    out["test_reliance"] = pc
    out["control_reliance"] = control.get("baseline")
    out["test_value"] = (m.get(metric) or m.get("macro_auc") or {}).get("value")
    print(json.dumps(out))


def summary(rows_path, secs, md_path, json_path):
    rows = [json.loads(l) for l in open(rows_path) if l.strip()]
    json.dump({"rows": rows, "seconds": int(secs)}, open(json_path, "w"), indent=1)
    lines = [
        "# Do the developer loop's gains hold on the sealed test? (`bench/develop-generalisation.sh`)",
        "",
        "Each run: synthetic data for one reference task, `engine init` from its request, "
        "`engine develop` with the heuristic proposer, `engine test` of the chosen round against round 0. "
        "Shuffled: the same with labels shuffled across images. CPU; total run time "
        f"{int(secs)} s.",
        "",
        "| task | seed | shuffled | metric | rounds run | kept | val first | val best (round) | val gain | test diff [95% CI] | test p | agreement | test reliance (control) |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        ci = r.get("test_ci")
        diff = r.get("test_diff")
        test = "–" if diff is None else f"{diff:+.4f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci and None not in ci else "")
        rel = "–" if r.get("test_reliance") is None else f"{r['test_reliance']:.3f}" + ("" if r.get("control_reliance") is None else f" ({r['control_reliance']:.3f})")
        lines.append(
            f"| {r['task']} | {r['seed']} | {'yes' if r['shuffled'] else 'no'} | {r['metric']} | {r['rounds_done']} | {r['kept']} | "
            f"{'–' if r['val_first'] is None else format(r['val_first'], '.4f')} | "
            f"{'–' if r['val_best'] is None else format(r['val_best'], '.4f')} ({r['chosen']}) | "
            f"{'–' if r['val_gain'] is None else format(r['val_gain'], '+.4f')} | {test} | "
            f"{'–' if r.get('test_p') is None else format(r['test_p'], '.4f')} | {r['agreement']} | {rel} |"
        )
    real = [r for r in rows if not r["shuffled"]]
    null = [r for r in rows if r["shuffled"]]
    lines.append("")
    if null:
        done = sum(r["rounds_done"] for r in null)
        kept = sum(r["kept"] for r in null)
        gain = sum(r["kept_for_objective"] for r in null)
        lines.append(
            f"- shuffled labels: {kept} of {done} rounds kept ({100 * kept / max(done, 1):.1f}%), "
            f"{gain} of them for a gain in the objective ({100 * gain / max(done, 1):.1f}%; the policy's alpha is 5%)"
        )
    if real:
        for what in ["holds", "not significant", "reversed", "nothing claimed"]:
            n = sum(r["agreement"] == what for r in real)
            lines.append(f"- real labels, {what}: {n} of {len(real)} runs")
        tasks = sorted({r["task"] for r in real})
        held = sorted({r["task"] for r in real if r["agreement"] == "holds"})
        lines.append(f"- tasks with a significant test gain in at least one run: {len(held)} of {len(tasks)} ({', '.join(held) or 'none'})")
    open(md_path, "w").write("\n".join(lines) + "\n")


if sys.argv[1] == "--summary":
    summary(*sys.argv[2:6])
else:
    row(*sys.argv[1:7])
