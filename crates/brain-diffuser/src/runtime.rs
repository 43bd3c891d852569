//! Facts about the libtorch this program runs on, and the device it should use.

use tch::Device;

/// The libtorch this crate was built against and what it offers at run time.
#[derive(Debug, Clone)]
pub struct LibtorchInfo {
    /// The version of the libtorch linked at build time (e.g. `2.11.0+cu130`).
    pub version: &'static str,
    /// The folder the binary's run path points at for libtorch's shared libraries.
    pub lib_dir: &'static str,
    /// Whether a CUDA device can be used.
    pub cuda_available: bool,
    /// How many CUDA devices are visible.
    pub cuda_devices: usize,
    /// Whether cuDNN can be used.
    pub cudnn_available: bool,
    /// libtorch's intra-op thread count.
    pub threads: i32,
}

impl LibtorchInfo {
    /// Queries libtorch.
    pub fn query() -> Self {
        Self {
            version: env!("BRAIN_DIFFUSER_LIBTORCH_VERSION"),
            lib_dir: env!("BRAIN_DIFFUSER_LIBTORCH_LIB"),
            cuda_available: tch::Cuda::is_available(),
            cuda_devices: usize::try_from(tch::Cuda::device_count()).unwrap_or(0),
            cudnn_available: tch::Cuda::cudnn_is_available(),
            threads: tch::get_num_threads(),
        }
    }
}

/// The device to run models on: `BRAIN_DIFFUSER_DEVICE` (`cpu`, `cuda`, `cuda:N`) when set,
/// otherwise the first CUDA device when there is one, otherwise the CPU.
pub fn default_device() -> Result<Device, String> {
    match std::env::var("BRAIN_DIFFUSER_DEVICE") {
        Ok(name) => parse_device(&name),
        Err(_) => Ok(Device::cuda_if_available()),
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device, String> {
    match name.trim() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|index| index.parse::<usize>().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("unknown device '{other}': expected cpu, cuda or cuda:N")),
    }
}

/// The shared libraries of libtorch mapped into this process, read from `/proc/self/maps` (Linux):
/// what was really loaded, whatever the build recorded.
pub fn loaded_libtorch_paths() -> Vec<String> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut paths: Vec<String> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.contains("libtorch") || path.contains("libc10"))
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}
