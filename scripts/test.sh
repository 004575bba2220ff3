#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs libtorch (outside the repo), then
# checks formatting, the rule that only engine-torch links libtorch, clippy, and every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "libtorch"
scripts/setup-libtorch.sh

step "formatting"
cargo fmt --all -- --check

step "libtorch stays out of the core and the engine binary"
for crate in engine-core engine-data engine-cli; do
    if tree="$(cargo tree -p "$crate" -e normal,build -i tch 2>/dev/null)" && grep -q '^tch v' <<<"$tree"; then
        echo "error: $crate depends on tch:" >&2
        echo "$tree" >&2
        exit 1
    fi
    echo "$crate: no tch"
done

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "chromium, for the report's browser test"
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "error: the report's browser test needs Debian's chromium package (apt-get install chromium, as root)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
chromium --version
# Here, too, a skip would hide a regression.
export ENGINE_REQUIRE_CHROMIUM=1

step "tests"
# The Slurm tests start a real one-node cluster (installing slurm-wlm and munge when
# missing); here a skip would hide a regression, so it fails instead.
export ENGINE_REQUIRE_SLURM=1
cargo test --workspace --locked
