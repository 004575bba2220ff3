//! Build script of engine-torch: rpath/CUDA link arguments and the libtorch version built against.

#[path = "build_support/rpath.rs"]
mod rpath;

use std::path::Path;

/// Reads the libtorch version from `<libtorch>/build-version` (libtorch zips and
/// scripts/setup-libtorch.sh) or `<torch>/version.py` (a Python install).
fn libtorch_version(lib: &Path) -> Option<(String, std::path::PathBuf)> {
    let root = lib.parent()?;
    let build_version = root.join("build-version");
    if let Ok(text) = std::fs::read_to_string(&build_version) {
        let version = text.trim();
        if !version.is_empty() {
            return Some((version.to_owned(), build_version));
        }
    }
    let version_py = root.join("version.py");
    let text = std::fs::read_to_string(&version_py).ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("__version__"))?;
    let version = line.split(['\'', '"']).nth(1)?;
    Some((version.to_owned(), version_py))
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build_support/rpath.rs");
    let lib = match rpath::emit_libtorch_link_args() {
        Ok(lib) => lib,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(1);
        }
    };
    let version = match libtorch_version(&lib) {
        Some((version, source)) => {
            println!("cargo:rerun-if-changed={}", source.display());
            version
        }
        None => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=ENGINE_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=ENGINE_LIBTORCH_LIB={}", lib.display());
}
