#!/usr/bin/env bash
# The demo: installs libtorch, builds the engine, checks the installation, then validates,
# plans, runs and re-runs the demo pipeline (manifests/demo.yaml) in a scratch workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing libtorch (once; later runs are a no-op)"
scripts/setup-libtorch.sh

step "building the engine"
cargo build --locked --bins
engine="$repo/target/debug/engine"

step "engine doctor: libtorch trains on this machine"
"$engine" doctor

work="${ENGINE_DEMO_DIR:-$repo/target/demo}"
rm -rf "$work"
mkdir -p "$work"
cp -r manifests/demo.yaml manifests/demo "$work/"
cd "$work"

step "engine synth chest: synthetic SIIM-ACR DICOMs with a drain shortcut"
"$engine" synth chest --out data/chest --n 600 --size 64 --seed 7

step "engine audit: the data audit finds the drain shortcut on its own"
"$engine" audit data/chest --attribute drain=drains.csv --seed 7

step "engine validate demo.yaml"
"$engine" validate demo.yaml

step "engine graph demo.yaml --format mermaid"
"$engine" graph demo.yaml --format mermaid

step "engine plan demo.yaml (nothing has run yet)"
"$engine" plan demo.yaml

step "engine apply demo.yaml"
"$engine" apply demo.yaml

step "what the pipeline found"
out() { "$engine" apply demo.yaml --json | python3 -c "import json,sys; print(json.load(sys.stdin)['stages']['$1']['outputs'])"; }
echo "audit (training split):"
python3 -m json.tool "$(out audit)/audit.json"
echo "validation metrics (plain uses the drain, debiased does not):"
python3 -m json.tool "$(out evaluate)/metrics.json"

step "engine apply demo.yaml again: everything is cached"
"$engine" apply demo.yaml

step "change one stage (train_debiased) and plan: only it and what reads it re-run"
python3 - <<'PY'
text = open("demo.yaml").read()
anchor = '"$ENGINE_OUT/model.json" lung_signal\n      inputs: [demo/train.py, demo/common.py]\n'
assert anchor in text, "demo.yaml changed; update the demo's edit"
open("demo.yaml", "w").write(text.replace(anchor, anchor + '      env: {EPOCHS: "600"}\n'))
PY
"$engine" plan demo.yaml

printf '\nworkspace: %s (records under .engine/runs, lock file demo.lock)\n' "$work"
