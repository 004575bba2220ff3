#!/usr/bin/env bash
# setup-libtorch.sh: installs libtorch 2.11.0 (from the PyPI torch wheel) into a cache outside the repo and links <repo>/.libtorch to it.
#
# Usage: scripts/setup-libtorch.sh [--cuda] [--force]
#
#   (default)  slim CPU set: torch/include and, from torch/lib, libc10, libtorch_cpu,
#              libtorch, libgomp, plus libcudart.so.13 and libcupti.so.13 (NEEDED by
#              libtorch_cpu.so even on CPU) from the nvidia-cuda-runtime/-cupti wheels.
#   --cuda     full CUDA set: all of torch/lib plus every nvidia-* wheel that torch's
#              METADATA requires on Linux, laid out like site-packages so that the
#              RPATH of the torch libraries ($ORIGIN/../../nvidia/...) resolves.
#   --force    reinstall even if the version marker says it is already there.
#
# Install directory: ${ENGINE_LIBTORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/engine/libtorch}/2.11.0-<cpu|cuda>
#   <dir>/ENGINE_LIBTORCH_VERSION   marker ("2.11.0 cpu"), written last
#   <dir>/torch/{include,lib}       what LIBTORCH points at (<repo>/.libtorch -> <dir>/torch)
#   <dir>/nvidia/...                (--cuda only) CUDA libraries from the nvidia-* wheels
# Downloaded wheels are kept in <cache>/wheels and reused; delete that folder to reclaim space.
set -euo pipefail

readonly TORCH_VERSION="2.11.0"
# What cuda-toolkit[cudart,cupti]==13.0.2 (required by torch 2.11.0 on Linux) pins.
readonly CUDART_REQ="nvidia-cuda-runtime==13.0.96.*"
readonly CUPTI_REQ="nvidia-cuda-cupti==13.0.85.*"
readonly CPU_TORCH_LIBS=(libc10.so libtorch_cpu.so libtorch.so libgomp.so.1)

variant="cpu"
force=0
for arg in "$@"; do
    case "$arg" in
        --cuda) variant="cuda" ;;
        --force) force=1 ;;
        -h | --help)
            sed -n '3,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "setup-libtorch: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${ENGINE_LIBTORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/engine/libtorch}"
dest="$cache_root/$TORCH_VERSION-$variant"
marker="$dest/ENGINE_LIBTORCH_VERSION"
expected="$TORCH_VERSION $variant"
link="$repo_root/.libtorch"

say() { printf 'setup-libtorch: %s\n' "$*"; }
die() {
    printf 'setup-libtorch: error: %s\n' "$*" >&2
    exit 1
}

# Points <repo>/.libtorch at the install (atomically: new link, then rename over the old one).
# When the target changes, touch build-version so that engine-torch's build script
# (rerun-if-changed on it) re-runs and re-reads the version.
refresh_link() {
    local target="$dest/torch"
    if [[ -L "$link" && "$(readlink "$link")" == "$target" ]]; then
        say "$link -> $target (unchanged)"
        return
    fi
    if [[ -e "$link" && ! -L "$link" ]]; then
        die "$link exists and is not a symlink; remove it and re-run"
    fi
    ln -sfn "$target" "$link.tmp.$$"
    mv -Tf "$link.tmp.$$" "$link"
    touch "$target/build-version"
    say "$link -> $target"
}

installed_ok() {
    [[ -f "$marker" && "$(<"$marker")" == "$expected" && -f "$dest/torch/lib/libtorch_cpu.so" ]]
}

if [[ "$force" -eq 0 ]] && installed_ok; then
    say "libtorch $expected already installed in $dest; nothing to do"
    refresh_link
    exit 0
fi

[[ "$(uname -s)" == "Linux" ]] || die "only Linux is supported (found $(uname -s))"
command -v python3 >/dev/null || die "python3 is required (it runs pip and unpacks the wheels)"
if ! python3 -m pip --version >/dev/null 2>&1; then
    # A fresh Debian has python3 without pip; install it from Debian's packages when we can.
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        say "pip is missing; installing Debian's python3-pip"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip; } >/dev/null ||
            die "could not install python3-pip with apt-get"
    else
        die "pip is required: python3 -m pip is not available (hint: sudo apt-get install python3-pip)"
    fi
fi

mkdir -p "$cache_root/wheels"
wheels="$cache_root/wheels"

# One installer at a time per cache.
if command -v flock >/dev/null; then
    exec 9>"$cache_root/.lock"
    if ! flock -n 9; then
        say "another install is running in $cache_root; waiting for it"
        flock 9
    fi
    if [[ "$force" -eq 0 ]] && installed_ok; then
        say "libtorch $expected was installed by the other run; nothing to do"
        refresh_link
        exit 0
    fi
    # Holding the lock, no other install is running: temp dirs left are from killed runs.
    rm -rf "$cache_root"/.tmp-*
fi

if [[ -e "$marker" ]]; then
    say "marker says '$(<"$marker")', want '$expected': reinstalling"
elif [[ -e "$dest" ]]; then
    say "$dest is incomplete (no marker): reinstalling"
fi

tmp="$(mktemp -d "$cache_root/.tmp-$variant.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

pip_download() { # pip_download <extra pip args...> <requirement...>
    python3 -m pip download --disable-pip-version-check --only-binary=:all: \
        --dest "$wheels" "$@"
}

# The wheel files a pip download log names (just saved, or already in $wheels), one per line.
wheels_in_log() {
    sed -n 's/^ *Saved \(.*\.whl\)$/\1/p; s/^ *File was already downloaded \(.*\.whl\)$/\1/p' "$1" | sort -u
}

# wheel_matching <log> <file-name glob>: the one wheel of the log whose name matches.
wheel_matching() {
    local w
    while IFS= read -r w; do
        # shellcheck disable=SC2053 # $2 is a glob on purpose
        if [[ "$(basename "$w")" == $2 && -f "$w" ]]; then
            printf '%s\n' "$w"
            return 0
        fi
    done < <(wheels_in_log "$1")
    die "pip did not report a wheel matching $2 (log: $1)"
}

say "downloading torch==$TORCH_VERSION (about 530 MB; reused from $wheels if already there)"
pip_download --no-deps "torch==$TORCH_VERSION" >"$tmp/pip-torch.log" 2>&1 ||
    {
        cat "$tmp/pip-torch.log" >&2
        die "pip download of torch==$TORCH_VERSION failed"
    }
torch_whl="$(wheel_matching "$tmp/pip-torch.log" "torch-$TORCH_VERSION-*.whl")"
say "torch wheel: $torch_whl"

# The Python part: reads wheels (zip files) and writes the chosen members.
extract_py='
import fnmatch, os, re, sys, zipfile

def write(z, info, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with z.open(info) as src, open(path, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
    mode = (info.external_attr >> 16) & 0o777
    os.chmod(path, mode or 0o644)

def torch(wheel, dest, variant, cpu_libs):
    z = zipfile.ZipFile(wheel)
    n = 0
    for info in z.infolist():
        name = info.filename
        if name.endswith("/"):
            continue
        keep = name.startswith("torch/include/")
        if name.startswith("torch/lib/"):
            keep = variant == "cuda" or name[len("torch/lib/"):] in cpu_libs
        if variant == "cuda" and name.startswith("torch/share/cmake/"):
            keep = True
        if keep:
            write(z, info, os.path.join(dest, name))
            n += 1
    version = re.search(r"__version__\s*=\s*.([^\"\x27]+)", z.read("torch/version.py").decode())
    if not version:
        sys.exit("no __version__ in torch/version.py")
    with open(os.path.join(dest, "torch", "build-version"), "w") as f:
        f.write(version.group(1) + "\n")
    missing = [l for l in cpu_libs if not os.path.exists(os.path.join(dest, "torch", "lib", l))]
    if missing:
        sys.exit("wheel lacks " + ", ".join(missing))
    print(f"  {n} files from {os.path.basename(wheel)} (version {version.group(1)})")

def nvidia_flat(wheel, libdir, *names):
    z = zipfile.ZipFile(wheel)
    found = set()
    for info in z.infolist():
        base = os.path.basename(info.filename)
        if fnmatch.fnmatch(info.filename, "nvidia/*/lib/*") and base in names:
            write(z, info, os.path.join(libdir, base))
            found.add(base)
    if set(names) - found:
        sys.exit(f"{wheel} lacks " + ", ".join(sorted(set(names) - found)))
    print(f"  {len(found)} files from {os.path.basename(wheel)}")

def nvidia_tree(wheel, dest):
    z = zipfile.ZipFile(wheel)
    n = 0
    for info in z.infolist():
        if info.filename.startswith("nvidia/") and not info.filename.endswith("/"):
            write(z, info, os.path.join(dest, info.filename))
            n += 1
    print(f"  {n} files from {os.path.basename(wheel)}")

def linux_requirements(wheel):
    # Requires-Dist lines of torch for Linux, without extras: the CUDA wheels.
    z = zipfile.ZipFile(wheel)
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req, _, marker = line[len("Requires-Dist:"):].partition(";")
        req, marker = req.strip(), marker.strip()
        if "extra" in marker or "Linux" not in marker:
            continue
        if req.startswith("nvidia-") or req.startswith("cuda-toolkit"):
            print(req)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "torch":
    torch(args[0], args[1], args[2], args[3:])
elif cmd == "nvidia-flat":
    nvidia_flat(args[0], args[1], *args[2:])
elif cmd == "nvidia-tree":
    nvidia_tree(args[0], args[1])
elif cmd == "requirements":
    linux_requirements(args[0])
else:
    sys.exit("unknown command " + cmd)
'
extract() { python3 -c "$extract_py" "$@"; }

stage="$tmp/install"
mkdir -p "$stage"
say "extracting libtorch ($variant) into a temporary directory"
extract torch "$torch_whl" "$stage" "$variant" "${CPU_TORCH_LIBS[@]}"

if [[ "$variant" == "cpu" ]]; then
    say "downloading $CUDART_REQ and $CUPTI_REQ (libtorch_cpu.so needs libcudart.so.13 and libcupti.so.13)"
    pip_download --no-deps "$CUDART_REQ" "$CUPTI_REQ" >"$tmp/pip-nvidia.log" 2>&1 ||
        {
            cat "$tmp/pip-nvidia.log" >&2
            die "pip download of the CUDA runtime wheels failed"
        }
    cudart_whl="$(wheel_matching "$tmp/pip-nvidia.log" "nvidia_cuda_runtime-13.0.96*.whl")"
    cupti_whl="$(wheel_matching "$tmp/pip-nvidia.log" "nvidia_cuda_cupti-13.0.85*.whl")"
    extract nvidia-flat "$cudart_whl" "$stage/torch/lib" libcudart.so.13
    extract nvidia-flat "$cupti_whl" "$stage/torch/lib" libcupti.so.13
else
    mapfile -t reqs < <(extract requirements "$torch_whl")
    [[ "${#reqs[@]}" -gt 0 ]] || die "found no CUDA requirements in the torch wheel's METADATA"
    say "resolving and downloading the CUDA wheels torch requires on Linux (several GB):"
    printf '    %s\n' "${reqs[@]}"
    pip_download "${reqs[@]}" >"$tmp/pip-cuda.log" 2>&1 ||
        {
            cat "$tmp/pip-cuda.log" >&2
            die "pip download of the CUDA wheels failed"
        }
    # The wheels of this resolution, as pip reported them (saved now or already there).
    mapfile -t cuda_whls < <(wheels_in_log "$tmp/pip-cuda.log" | grep '/nvidia_[^/]*\.whl$' || true)
    [[ "${#cuda_whls[@]}" -gt 0 ]] || die "pip resolved no nvidia-* wheels (see $tmp/pip-cuda.log)"
    for w in "${cuda_whls[@]}"; do
        extract nvidia-tree "$w" "$stage"
    done
fi

# -lgomp (emitted by torch-sys) then resolves to the bundled libgomp, no compiler package needed.
ln -sf libgomp.so.1 "$stage/torch/lib/libgomp.so"

# Check that every library the link needs resolves inside the install.
if command -v ldd >/dev/null; then
    check=(libc10.so libtorch_cpu.so)
    [[ "$variant" == "cuda" ]] && check+=(libtorch.so libtorch_cuda.so)
    for lib in "${check[@]}"; do
        # libcuda.so.1 comes with the NVIDIA driver of the host, never from a wheel.
        if missing="$(ldd "$stage/torch/lib/$lib" | grep 'not found' | grep -v 'libcuda\.so')"; then
            die "$lib has unresolved dependencies:"$'\n'"$missing"
        fi
    done
fi

printf '%s\n' "$expected" >"$stage/ENGINE_LIBTORCH_VERSION"

# Swap into place: the final directory either is complete (marker inside) or absent.
if [[ -e "$dest" ]]; then
    mv "$dest" "$tmp/old"
fi
mv "$stage" "$dest"
say "installed libtorch $expected in $dest ($(du -sh "$dest" | cut -f1))"
refresh_link
say "done; cargo build / cargo test now find libtorch through .cargo/config.toml"
