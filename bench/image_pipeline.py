#!/usr/bin/env python3
"""image_pipeline.py: helper of image-pipeline.sh (the PyTorch DataLoader peer, running the
engine's `engine-worker bench-images`, the medians of RUNS, and the report). Run it through
image-pipeline.sh.

  peer DIR          the peer: a torch Dataset over the sorted JPEGs of DIR (PIL open, RGB,
                    torchvision transforms), DataLoader(batch_size=64, shuffle=True,
                    num_workers=2, persistent_workers=True); one JSON line per epoch, like
                    `engine-worker bench-images`
  run -- CMD...     runs CMD (either side), passes its JSON lines through after checking
                    them, then adds one line {"run": ...}: wall seconds, the CPU seconds of CMD
                    and its children, and the CPU seconds the rest of the machine used meanwhile
                    (from /proc/stat), so that a contended run shows in the report
  pick DIR          tries the peer's transform kinds (v1, v2, v2-tensor) on the first LIMIT
                    images and prints the fastest (steady-state epoch), with the figures
  median FILE...    per-epoch median over runs (each FILE: one run's JSON lines)
  report ...        writes image-pipeline.md and image-pipeline.json
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def image_paths(root):
    """Every .jpg/.jpeg/.png under root, sorted by path (as the engine-worker does)."""
    out = []
    for d, _, files in os.walk(root):
        out.extend(os.path.join(d, f) for f in files if f.lower().endswith((".jpg", ".jpeg", ".png")))
    return sorted(out)


def make_transform(kind, size):
    """The same operations as the engine's path: shorter side to `size` (bilinear, antialiased)
    and centre crop; then horizontal flip p 0.5, affine (±10°, ±5 % shift, zoom 0.9-1.1,
    bilinear), brightness and contrast ±20 %, ImageNet normalisation; float32 CHW."""
    import torch
    from torchvision.transforms import InterpolationMode as IM

    if kind == "v1":
        from torchvision import transforms as T

        return T.Compose([
            T.Resize(size, interpolation=IM.BILINEAR),
            T.CenterCrop(size),
            T.RandomHorizontalFlip(),
            T.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1), interpolation=IM.BILINEAR),
            T.ColorJitter(brightness=0.2, contrast=0.2),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ])
    from torchvision.transforms import v2

    if kind == "v2":  # the v2 classes on the PIL image, as v1 (tensor conversion at the end)
        return v2.Compose([
            v2.Resize(size, interpolation=IM.BILINEAR, antialias=True),
            v2.CenterCrop(size),
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1), interpolation=IM.BILINEAR),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ])
    if kind == "v2-tensor":  # v2 on a uint8 tensor from the start (torch kernels, not PIL)
        return v2.Compose([
            v2.ToImage(),
            v2.Resize(size, interpolation=IM.BILINEAR, antialias=True),
            v2.CenterCrop(size),
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1), interpolation=IM.BILINEAR),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ])
    raise SystemExit(f"unknown transforms kind {kind!r} (v1, v2, v2-tensor)")


class JpegDataset:
    """Sorted image paths; PIL open -> RGB -> transform. Returns the tensor only."""

    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB"))


def peer(args):
    import torch
    import torchvision
    import PIL
    from torch.utils.data import DataLoader

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    paths = image_paths(args.dir)
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        sys.exit(f"no images under {args.dir}")
    ds = JpegDataset(paths, make_transform(args.transforms, args.size))
    loader = DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                        persistent_workers=args.workers > 0)
    print(json.dumps({"peer": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                               "pillow": PIL.__version__, "python": platform.python_version(),
                               "transforms": args.transforms, "workers": args.workers,
                               "torch_threads": torch.get_num_threads()}}), flush=True)
    for epoch in range(args.epochs):
        t = time.perf_counter()
        checksum, n = 0.0, 0
        for x in loader:  # worker start-up is part of the first epoch
            checksum += x.sum(dtype=torch.float32).item()
            n += x.shape[0]
        secs = time.perf_counter() - t
        print(json.dumps({"epoch": epoch + 1, "images": n, "seconds": secs, "images_per_s": n / secs,
                          "checksum": checksum}), flush=True)


def machine_cpu_seconds():
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq), and
    stolen by the hypervisor for other guests (steal)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / hz, f[7] / hz


def run_cmd(args):
    """Runs one side; passes its lines through, checked, and adds the CPU accounting."""
    import resource

    def children_cpu():
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    (busy0, steal0), cpu0, t = machine_cpu_seconds(), children_cpu(), time.perf_counter()
    r = subprocess.run(args.cmd, capture_output=True, text=True)
    (busy1, steal1), wall, cpu = machine_cpu_seconds(), time.perf_counter() - t, children_cpu() - cpu0
    busy, steal = busy1 - busy0, steal1 - steal0
    if r.returncode != 0:
        sys.exit(f"{' '.join(args.cmd)} failed ({r.returncode}):\n{r.stderr}")
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip().startswith("{")]
    epochs = [l for l in lines if "epoch" in l]
    if not epochs or any("images_per_s" not in l for l in epochs):
        sys.exit(f"unexpected output of {' '.join(args.cmd)}:\n{r.stdout}\n{r.stderr}")
    for l in lines:
        print(json.dumps(l), flush=True)
    print(json.dumps({"run": {"wall_seconds": wall, "cpu_seconds": cpu,
                              "others_cpu_seconds": max(0.0, busy - cpu), "steal_seconds": steal,
                              "cores": os.cpu_count()}}), flush=True)


def pick(args):
    """Each transform kind on the first LIMIT images, two epochs; the fastest second epoch wins."""
    trials, others, n = {}, {}, 0
    for kind in args.kinds.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "run", "--", sys.executable, os.path.abspath(__file__),
               "peer", args.dir, "--transforms", kind, "--limit", str(args.limit), "--epochs", "2",
               "--size", str(args.size), "--batch", str(args.batch), "--workers", str(args.workers),
               "--threads", str(args.threads)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{kind}: failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        last = [l for l in lines if "epoch" in l][-1]
        run = next(l["run"] for l in lines if "run" in l)
        n, trials[kind] = last["images"], last["images_per_s"]
        others[kind] = (run["others_cpu_seconds"] + run["steal_seconds"]) / (run["wall_seconds"] * run["cores"])
        print(f"  {kind:10s} {last['images_per_s']:7.1f} images/s (epoch 2 of {n} images; other processes "
              f"and steal {100 * others[kind]:.0f} % of the machine)", file=sys.stderr)
    if not trials:
        sys.exit("no transform kind ran")
    best = max(trials, key=trials.get)
    json.dump({"picked": best, "limit": n, "images_per_s": trials, "others_share": others}, sys.stdout)


def read_epochs(path):
    return [l for l in (json.loads(s) for s in open(path) if s.strip()) if "epoch" in l]


def median_runs(paths):
    """Per epoch: the median of seconds over the runs (images/s from that), all runs kept."""
    runs = [read_epochs(p) for p in paths]
    out = []
    for e in range(min(len(r) for r in runs)):
        secs = [r[e]["seconds"] for r in runs]
        med = statistics.median(secs)
        out.append({"epoch": e + 1, "images": runs[0][e]["images"], "seconds": med,
                    "images_per_s": runs[0][e]["images"] / med,
                    "runs_seconds": secs, "checksums": [r[e]["checksum"] for r in runs]})
    return out


def report(args):
    ours_runs = [read_epochs(p) for p in args.ours]
    peer_runs = [read_epochs(p) for p in args.peer]
    ours_med, peer_med = median_runs(args.ours), median_runs(args.peer)
    peer_info = next((json.loads(s)["peer"] for s in open(args.peer[0]) if '"peer"' in s), {})
    runinfo = lambda p: next((json.loads(s)["run"] for s in open(p) if s.startswith('{"run"')), {})
    ours_acct, peer_acct = [runinfo(p) for p in args.ours], [runinfo(p) for p in args.peer]
    trial = json.load(open(args.trial)) if args.trial and os.path.exists(args.trial) else None
    rows = []
    for o, p in zip(ours_med, peer_med):
        target = 1.5 if o["epoch"] == 1 else 10.0
        ratio = o["images_per_s"] / p["images_per_s"]
        rows.append({"epoch": o["epoch"], "ours_images_per_s": o["images_per_s"], "peer_images_per_s": p["images_per_s"],
                     "ours_seconds": o["seconds"], "peer_seconds": p["seconds"], "ratio": ratio,
                     "target": target, "met": ratio >= target})
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.processor())
    mem_gib = next((int(l.split()[1]) / 2**20 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    env = {
        "date": args.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "engine_worker": args.engine_version, "libtorch": args.libtorch, "cpu": cpu, "nproc": os.cpu_count(),
        "memory_gib": round(mem_gib, 1), "gpu": "none (device cpu)",
        "loadavg_before": args.load_before,
        "loadavg_after": args.load_after or " ".join(open("/proc/loadavg").read().split()[:3]),
        "kernel": platform.platform(),
    }
    results = {"images": args.images, "image_size": args.image_size, "size": args.size, "batch": args.batch,
               "epochs": len(rows), "runs": args.runs, "threads": args.threads, "dataset": args.dataset,
               "ours_command": args.ours_command, "peer": peer_info,
               "epochs_table": rows, "ours_median": ours_med, "peer_median": peer_med,
               "ours_runs": ours_runs, "peer_runs": peer_runs,
               "cpu_accounting": {"ours": ours_acct, "peer": peer_acct}, "engine_env": args.engine_env,
               "peer_transforms_trial": trial,
               "targets_met": all(r["met"] for r in rows), "environment": env}

    def contended(a):
        return bool(a) and a["others_cpu_seconds"] + a.get("steal_seconds", 0) > 0.05 * a["wall_seconds"] * a["cores"]

    def acct_line(name, accts):
        parts = []
        for i, a in enumerate(accts, 1):
            if a:
                avail = a["wall_seconds"] * a["cores"]
                parts.append(f"  - run {i}: {a['wall_seconds']:.1f} s wall, {a['cpu_seconds']:.1f} CPU-s own, "
                             f"{a['others_cpu_seconds']:.1f} CPU-s other processes, {a.get('steal_seconds', 0):.1f} s "
                             f"stolen by the hypervisor ({100 * (a['others_cpu_seconds'] + a.get('steal_seconds', 0)) / avail:.0f} % "
                             f"of the {a['cores']} cores){' CONTENDED' if contended(a) else ''}")
        return f"- {name}:\n" + "\n".join(parts) if parts else f"- {name}: not recorded"
    n_cont = sum(contended(a) for a in ours_acct + peer_acct)
    n_all = len(ours_acct) + len(peer_acct)
    if n_cont == 0:
        cont_note = "none was"
    elif 2 * n_cont < n_all and all(2 * sum(map(contended, x)) < len(x) for x in (ours_acct, peer_acct)):
        cont_note = (f"{n_cont} of {n_all} runs were, marked CONTENDED below; they are a minority on each side, which the "
                     "per-epoch median sets aside")
    else:
        cont_note = f"{n_cont} of {n_all} runs were, marked CONTENDED below: other work inflated these wall times; rerun"
    results["contended_runs"] = {"ours": [contended(a) for a in ours_acct], "peer": [contended(a) for a in peer_acct]}
    os.makedirs(args.out_dir, exist_ok=True)
    json.dump(results, open(os.path.join(args.out_dir, "image-pipeline.json"), "w"), indent=2)
    trial_note = ("\n  The transforms kind comes from PEER_TRANSFORMS (default `v2-tensor`, transforms.v2 on a "
                  "uint8 tensor from the start, the fastest of `v1`, `v2` and `v2-tensor` on this machine; "
                  "PEER_TRANSFORMS=auto tries all three first).")
    if trial:
        figs = ", ".join(f"{k} {v:.0f}" for k, v in trial["images_per_s"].items())
        trial_note = ("\n  `" + trial["picked"] + f"` was the fastest in a trial on the first {trial['limit']} "
                      f"images (images/s of the second epoch: {figs}; `v1` is torchvision.transforms "
                      "on the PIL image, `v2` transforms.v2 on the PIL image, `v2-tensor` transforms.v2 "
                      "on a uint8 tensor from the start).")
    runs_note = "one run" if args.runs == 1 else f"the median of {args.runs} runs (per epoch, of seconds)"
    table = "\n".join(
        f"| {r['epoch']}{' (decode + cache + augment)' if r['epoch'] == 1 else ' (augment from the cache)'} "
        f"| {r['ours_images_per_s']:.0f} ({r['ours_seconds']:.1f} s) | {r['peer_images_per_s']:.0f} ({r['peer_seconds']:.1f} s) "
        f"| {r['ratio']:.2f}x | {r['target']:g}x | {'yes' if r['met'] else 'NO'} |" for r in rows)
    md = f"""# image-pipeline benchmark (latest run)

The engine's image path against a PyTorch `DataLoader` with torchvision transforms, on the
same {args.images} RGB JPEGs of {args.image_size}x{args.image_size} (`{args.dataset}`) and the
same operations, {len(rows)} epochs in batches of {args.batch}, on the CPU: shorter side to
{args.size} (bilinear, antialiased: triangle filter) and centre crop; then per sample a random
horizontal flip (p 0.5), an affine (rotation ±10°, translation ±5 %, scale 0.9-1.1, bilinear),
brightness ±20 % and contrast ±20 %, ImageNet normalisation; float32 NCHW; every batch summed.

- ours (release build):
  `{args.ours_command}`.
  Epoch 1 decodes every JPEG on {args.threads} threads, resizes (SIMD convolutions) and
  crops, writes the uint8 cache (fresh every run), maps it with libtorch and augments every
  batch; later epochs augment from the cache. On the CPU the augmentation is one fused pass
  per image straight from the cache (engine/data/src/augment.rs) on libtorch's intra-op
  threads, computing what the GPU path's affine_grid + grid_sample and tensor operations
  compute.
- peer: a Dataset over the sorted paths (PIL open, RGB, torchvision transforms
  `{peer_info.get('transforms', '?')}`), `DataLoader(batch_size={args.batch}, shuffle=True,
  num_workers={peer_info.get('workers', '?')}, persistent_workers=True)`,
  `torch.set_num_threads({args.threads})`; torch {peer_info.get('torch', '?')}, torchvision
  {peer_info.get('torchvision', '?')}, Pillow {peer_info.get('pillow', '?')}. It decodes and
  transforms every image every epoch; worker start-up counts in epoch 1. The same operations,
  not the same numbers: torchvision's RandomAffine fills outside the image with 0 (it has no
  border padding; about 8 % of the pixels), its ColorJitter applies brightness and contrast
  in a random order with the grey-level mean, so the checksums differ (the peer's is lower,
  mostly from the black fill).{trial_note}

Figures are {runs_note}. Machine: {env['nproc']} cores, no GPU.

Written by `bench/image-pipeline.sh`; rerun it to refresh this file and `image-pipeline.json`.

| epoch | ours images/s | peer images/s | ours / peer | target | met? |
|---|---:|---:|---:|---:|---|
{table}

Targets: at least 1.5x the peer's images/s on the first epoch, at least 10x on later epochs:
{'all met' if results['targets_met'] else 'NOT all met'}.

CPU during each run; a run is contended when other processes and the hypervisor's steal took
over 5 % of the machine ({cont_note}):
{acct_line('ours', ours_acct)}
{acct_line('peer', peer_acct)}
{('- extra environment for engine-worker: `' + args.engine_env + '`' + chr(10)) if args.engine_env else ''}
Environment:
- date: {env['date']}
- engine-worker: {env['engine_worker']} (release build), libtorch {env['libtorch']}
- python {peer_info.get('python', '?')}, torch {peer_info.get('torch', '?')}, torchvision {peer_info.get('torchvision', '?')}
- machine: {cpu}, {env['nproc']} cores, {env['memory_gib']:.0f} GiB, no GPU, {env['kernel']}; load average {env['loadavg_before']} before, {env['loadavg_after']} after (other work on the machine inflates wall times)
"""
    open(os.path.join(args.out_dir, "image-pipeline.md"), "w").write(md)
    for r in rows:
        print(f"epoch {r['epoch']}: ours {r['ours_images_per_s']:7.1f} img/s  peer {r['peer_images_per_s']:7.1f} img/s  "
              f"ratio {r['ratio']:5.2f}x  target {r['target']:g}x  {'met' if r['met'] else 'MISSED'}")
    if args.strict and not results["targets_met"]:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("peer")
    p.add_argument("dir")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--transforms", default="v1", help="v1, v2 or v2-tensor")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (for trying transforms)")
    p.add_argument("--seed", type=int, default=0)
    o = sub.add_parser("run")
    o.add_argument("cmd", nargs=argparse.REMAINDER)
    k = sub.add_parser("pick")
    k.add_argument("dir")
    k.add_argument("--kinds", default="v1,v2,v2-tensor")
    k.add_argument("--limit", type=int, default=1280)
    for a, d in (("--size", 224), ("--batch", 64), ("--workers", 2), ("--threads", 2)):
        k.add_argument(a, type=int, default=d)
    m = sub.add_parser("median")
    m.add_argument("files", nargs="+")
    r = sub.add_parser("report")
    r.add_argument("--ours", nargs="+", required=True)
    r.add_argument("--peer", nargs="+", required=True)
    for a in ("--out-dir", "--engine-version", "--libtorch", "--load-before", "--dataset", "--ours-command"):
        r.add_argument(a, required=True)
    for a, d in (("--images", 5000), ("--image-size", 256), ("--size", 224), ("--batch", 64), ("--runs", 1),
                 ("--threads", 2)):
        r.add_argument(a, type=int, default=d)
    r.add_argument("--trial", default="")
    r.add_argument("--date", default="", help="re-rendering a saved run: its date")
    r.add_argument("--load-after", default="", help="re-rendering a saved run: its load average after")
    r.add_argument("--engine-env", default="")
    r.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    if args.what == "run":
        if args.cmd and args.cmd[0] == "--":
            args.cmd = args.cmd[1:]
        run_cmd(args)
    elif args.what == "pick":
        pick(args)
    elif args.what == "peer":
        peer(args)
    elif args.what == "median":
        json.dump(median_runs(args.files), sys.stdout, indent=2)
    else:
        report(args)


if __name__ == "__main__":
    main()
