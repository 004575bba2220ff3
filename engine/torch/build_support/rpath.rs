//! Link arguments for every package whose binaries or tests link libtorch; a module of their build scripts.
//!
//! `cargo:rustc-link-arg` only reaches the binaries, tests and examples of the package whose
//! build script prints it, so each such package (engine-torch, engine-cli) mounts this file in
//! its `build.rs` with `#[path = ".../build_support/rpath.rs"] mod rpath;` and calls
//! [`emit_libtorch_link_args`]. The package must depend directly
//! on `torch-sys` (whose `links = "tch"` exports `DEP_TCH_LIBTORCH_LIB`) and may have a `cuda`
//! feature (it reads `CARGO_FEATURE_CUDA` of the including package).

/// Prints the rpath to libtorch's lib dir and, with the `cuda` feature, forces libtorch_cuda
/// into the binaries; returns that lib dir.
///
/// The rpath is written as a RUNPATH (`--enable-new-dtags`), so `LD_LIBRARY_PATH` still wins:
/// a GPU host can run the same binary against its own PyTorch install.
pub fn emit_libtorch_link_args() -> Result<std::path::PathBuf, String> {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| {
            "DEP_TCH_LIBTORCH_LIB is not set: this package must depend directly on torch-sys"
                .to_owned()
        })?;
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
    }
    if target_os == "linux" || target_os == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        let cuda_lib = lib.join("libtorch_cuda.so");
        if !cuda_lib.exists() {
            return Err(format!(
                "the `cuda` feature needs the CUDA libtorch, but {} does not exist; \
                 run scripts/setup-libtorch.sh --cuda (or point LIBTORCH at a CUDA build)",
                cuda_lib.display()
            ));
        }
        // Nothing references libtorch_cuda's symbols directly, so the default --as-needed
        // would drop it and torch would report no CUDA at run time.
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    Ok(lib)
}
