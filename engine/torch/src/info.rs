//! What libtorch this binary was built against and what it finds at run time.

use serde::Serialize;
use tch::Cuda;

/// The libtorch runtime this process runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeInfo {
    /// libtorch version of the install the build was made against (e.g. `2.11.0+cu130`),
    /// read at build time from its `build-version` or `version.py`; `unknown` if neither.
    pub libtorch_version: String,
    /// libtorch lib directory at build time (the rpath of the binary).
    pub build_libtorch_lib: String,
    /// Path of the `libtorch_cpu.so` actually loaded (Linux only; `None` elsewhere).
    pub loaded_libtorch: Option<String>,
    /// Whether the binary was built with the `cuda` feature (libtorch_cuda linked in).
    pub cuda_linked: bool,
    /// Whether libtorch can use CUDA now.
    pub cuda_available: bool,
    /// Number of CUDA devices libtorch sees (0 without CUDA).
    pub cuda_device_count: i64,
    /// Whether cuDNN is usable.
    pub cudnn_available: bool,
    /// Threads libtorch uses for intra-op parallelism on the CPU.
    pub cpu_threads: i32,
}

/// Collects [`RuntimeInfo`]; cheap, and safe to call on hosts without a GPU.
pub fn runtime_info() -> RuntimeInfo {
    let cuda_available = Cuda::is_available();
    RuntimeInfo {
        libtorch_version: env!("ENGINE_LIBTORCH_VERSION").to_owned(),
        build_libtorch_lib: env!("ENGINE_LIBTORCH_LIB").to_owned(),
        loaded_libtorch: loaded_library("libtorch_cpu.so"),
        cuda_linked: cfg!(feature = "cuda"),
        cuda_available,
        cuda_device_count: if cuda_available {
            Cuda::device_count()
        } else {
            0
        },
        cudnn_available: cuda_available && Cuda::cudnn_is_available(),
        cpu_threads: tch::get_num_threads(),
    }
}

/// Finds the path of a loaded shared library by file name in `/proc/self/maps`.
fn loaded_library(file_name: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.rsplit('/').next() == Some(file_name))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_consistent() {
        let info = runtime_info();
        assert!(info.cpu_threads >= 1);
        assert!(info.cuda_available || info.cuda_device_count == 0);
        assert!(
            info.libtorch_version.starts_with("2.11.0"),
            "{}",
            info.libtorch_version
        );
        if cfg!(target_os = "linux") {
            let loaded = info
                .loaded_libtorch
                .expect("libtorch_cpu.so should be mapped");
            assert!(loaded.ends_with("/libtorch_cpu.so"));
        }
    }
}
