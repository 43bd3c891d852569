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

/// The environment variable naming the default device (`cpu`, `cuda`, `cuda:N`).
pub const DEVICE_VARIABLE: &str = "BRAIN_DIFFUSER_DEVICE";

/// A device name that is not understood, or that names a device this machine does not have.
/// `origin` is where the name came from (`--device`, `BRAIN_DIFFUSER_DEVICE`, `device`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not `cpu`, `cuda` or `cuda:N`.
    #[error("{origin} '{name}': unknown device; expected cpu, cuda or cuda:N")]
    Unknown { origin: String, name: String },
    /// A CUDA device that libtorch cannot see.
    #[error("{origin} '{name}': {available}")]
    Unavailable { origin: String, name: String, available: String },
}

/// The device to run models on: `BRAIN_DIFFUSER_DEVICE` (`cpu`, `cuda`, `cuda:N`) when set,
/// otherwise the first CUDA device when there is one, otherwise the CPU. A device the variable
/// names must exist on this machine.
pub fn default_device() -> Result<Device, DeviceError> {
    match std::env::var_os(DEVICE_VARIABLE) {
        Some(name) => match name.to_str() {
            Some(name) => parse_device_from(DEVICE_VARIABLE, name),
            None => Err(DeviceError::Unknown {
                origin: DEVICE_VARIABLE.to_owned(),
                name: name.to_string_lossy().into_owned(),
            }),
        },
        None => Ok(Device::cuda_if_available()),
    }
}

/// The device of a `--device` argument when given, else [`default_device`].
pub fn select_device(argument: Option<&str>) -> Result<Device, DeviceError> {
    match argument {
        Some(name) => parse_device_from("--device", name),
        None => default_device(),
    }
}

/// Parses `cpu`, `cuda` or `cuda:N` and checks that the device exists on this machine.
pub fn parse_device(name: &str) -> Result<Device, DeviceError> {
    parse_device_from("device", name)
}

/// [`parse_device`] for a name that came from `origin` (an argument or a variable), which the
/// error names.
pub fn parse_device_from(origin: &str, name: &str) -> Result<Device, DeviceError> {
    let device = parse_device_name(origin, name)?;
    check_device(origin, name, device)?;
    Ok(device)
}

/// Parses `cpu`, `cuda` or `cuda:N` without asking libtorch whether the device exists.
pub fn parse_device_name(origin: &str, name: &str) -> Result<Device, DeviceError> {
    match name.trim() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|index| index.parse::<usize>().ok())
            .map(Device::Cuda)
            .ok_or_else(|| DeviceError::Unknown { origin: origin.to_owned(), name: name.to_owned() }),
    }
}

/// Checks that `device` exists: any CUDA device needs libtorch to see at least `index + 1` of
/// them. (Using a missing CUDA device makes libtorch abort the process.)
pub fn check_device(origin: &str, name: &str, device: Device) -> Result<(), DeviceError> {
    let Device::Cuda(index) = device else { return Ok(()) };
    let count = cuda_device_count();
    if index < count {
        return Ok(());
    }
    let available = match count {
        0 => "no CUDA device is available here (no NVIDIA driver or GPU, or a CPU-only libtorch); use cpu".to_owned(),
        1 => format!("cuda:{index} does not exist: this machine has 1 CUDA device (cuda:0); use cuda:0 or cpu"),
        n => format!(
            "cuda:{index} does not exist: this machine has {n} CUDA devices (cuda:0 to cuda:{}); use one of them or cpu",
            n - 1
        ),
    };
    Err(DeviceError::Unavailable { origin: origin.to_owned(), name: name.to_owned(), available })
}

/// How many CUDA devices libtorch can use here (0 without a driver, a GPU or a CUDA libtorch).
pub fn cuda_device_count() -> usize {
    if tch::Cuda::is_available() { usize::try_from(tch::Cuda::device_count()).unwrap_or(0) } else { 0 }
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

/// Sets up `tracing` output on stderr for the `brain-diffuser` binary and the examples.
///
/// The filter is `RUST_LOG` when it is set and parses, else `default_filter` (e.g. `"info"`).
/// Colours (ANSI escape codes) are used only when stderr is a terminal and `NO_COLOR` is unset or
/// empty (<https://no-color.org>), so that log files stay plain text. When a global subscriber is
/// already set (a second call, or a host program's own), that one is kept.
pub fn init_logging(default_filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let ansi = use_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    // `try_init` fails only when a global subscriber exists already: keeping it is the intent.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Whether log lines get colour codes: only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value.
fn use_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// The variable that sets how many threads the compute libraries use: libtorch's intra-op pool
/// (its OpenMP team) and rayon's global pool (ridge, metrics, noise, NSD assembly). A positive
/// integer; unset, see [`init_threads`].
pub const THREADS_VARIABLE: &str = "BRAIN_DIFFUSER_THREADS";

/// A [`THREADS_VARIABLE`] that is not a positive integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{THREADS_VARIABLE}='{value}': expected a positive number of threads, e.g. 4 (or unset it)")]
pub struct ThreadsError {
    /// The value found.
    pub value: String,
}

/// The thread counts of the compute libraries, as [`init_threads`] set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPolicy {
    /// libtorch's intra-op threads.
    pub torch: usize,
    /// rayon's global pool, when [`init_threads`] sized it (`None`: rayon's own default, the
    /// usable CPUs or `RAYON_NUM_THREADS`).
    pub rayon: Option<usize>,
}

/// Sets the threads of the compute libraries (docs/ARCHITECTURE.md, "Threads"); call it once at
/// the start of a program, before any model runs.
///
/// With [`THREADS_VARIABLE`] set to `n`, libtorch's intra-op pool and rayon's global pool both get
/// `n` threads. Otherwise libtorch keeps its default (one thread per physical core, or
/// `OMP_NUM_THREADS`), capped at the CPUs this process may use (its affinity mask and cgroup
/// quota: a container limited to 2 CPUs on a 64-core host gets 2, not 32), and rayon keeps its own
/// default. The OpenMP wait policy cannot be set here (libgomp reads it when it loads, before
/// `main`): see [`reexec_with_bounded_openmp_spinning`].
pub fn init_threads() -> Result<ThreadPolicy, ThreadsError> {
    let requested = match std::env::var_os(THREADS_VARIABLE) {
        Some(value) => Some(parse_threads(&value)?),
        None => None,
    };
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let torch_default = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
    let user_set_omp = std::env::var_os("OMP_NUM_THREADS").is_some();
    let policy = thread_policy(requested, cpus, torch_default, user_set_omp);
    if policy.torch != torch_default {
        tch::set_num_threads(i32::try_from(policy.torch).unwrap_or(i32::MAX));
    }
    if let Some(n) = policy.rayon {
        // Fails only when the global pool exists already (a second call, or rayon work before):
        // it then keeps its size, which the log says.
        if rayon::ThreadPoolBuilder::new().num_threads(n).build_global().is_err() && rayon::current_num_threads() != n {
            tracing::warn!(
                threads = rayon::current_num_threads(),
                wanted = n,
                "rayon's global pool was already started"
            );
        }
    }
    tracing::debug!(libtorch = tch::get_num_threads(), rayon = rayon::current_num_threads(), cpus, "threads");
    Ok(policy)
}

/// The thread counts for a [`THREADS_VARIABLE`] of `requested`, `cpus` usable CPUs and libtorch's
/// default of `torch_default` threads (which follows `OMP_NUM_THREADS` when `user_set_omp`).
fn thread_policy(requested: Option<usize>, cpus: usize, torch_default: usize, user_set_omp: bool) -> ThreadPolicy {
    match requested {
        Some(n) => ThreadPolicy { torch: n, rayon: Some(n) },
        None if user_set_omp => ThreadPolicy { torch: torch_default, rayon: None },
        None => ThreadPolicy { torch: torch_default.min(cpus).max(1), rayon: None },
    }
}

fn parse_threads(value: &std::ffi::OsStr) -> Result<usize, ThreadsError> {
    let invalid = || ThreadsError { value: value.to_string_lossy().into_owned() };
    let n: usize = value.to_str().ok_or_else(invalid)?.trim().parse().map_err(|_| invalid())?;
    // More threads than this is a typo, not a machine: i32 is libtorch's type for the count.
    if n == 0 || n > 4096 {
        return Err(invalid());
    }
    Ok(n)
}

/// The OpenMP variable that says whether waiting threads spin (`ACTIVE`) or sleep (`PASSIVE`).
pub const OPENMP_WAIT_POLICY: &str = "OMP_WAIT_POLICY";

/// GNU libgomp's variable for how many rounds a waiting thread spins before it sleeps.
pub const OPENMP_SPIN_COUNT: &str = "GOMP_SPINCOUNT";

/// The spin count this workspace's programs run with unless the user sets a policy or a count:
/// libgomp's default (300,000 rounds) lets waiting threads take the CPUs from the threads they
/// wait for on a shared machine, and sleeping at once (`PASSIVE`, 0) pays a wake-up for every
/// parallel operation. Measured on the demo's `reconstruct` (2 cores, `scripts/load-check.sh`,
/// docs/ARCHITECTURE.md "Threads"): 300,000 rounds 15 s quiet / 103 s beside a 2-thread load,
/// 0 rounds 61-65 s / 49-56 s, 2,000 rounds 29 s / 57 s.
pub const BOUNDED_SPIN_COUNT: &str = "2000";

/// Runs this program again, in the same process, with `GOMP_SPINCOUNT=`[`BOUNDED_SPIN_COUNT`]
/// when neither `OMP_WAIT_POLICY` nor `GOMP_SPINCOUNT` is set (what the user sets is kept); call
/// it first thing in `main`.
///
/// GNU libgomp, libtorch's OpenMP runtime, reads these variables once, when it is loaded: for a
/// program linked to libtorch that is before `main`, and before any of the program's own code
/// (even a `.preinit_array` function, which runs before glibc has set up the environment). So the
/// variable is set for an `exec` of the same executable with the same arguments: same process id,
/// same standard streams, one more load of libtorch (a fraction of a second).
///
/// Returns `Ok` without running anything when a variable is set or on systems other than Linux,
/// and the error when the `exec` failed (the program then goes on with libgomp's default).
pub fn reexec_with_bounded_openmp_spinning() -> std::io::Result<()> {
    let user_set = std::env::var_os(OPENMP_WAIT_POLICY).is_some() || std::env::var_os(OPENMP_SPIN_COUNT).is_some();
    if user_set || !cfg!(target_os = "linux") {
        return Ok(());
    }
    reexec_with(OPENMP_SPIN_COUNT, BOUNDED_SPIN_COUNT)
}

#[cfg(unix)]
fn reexec_with(variable: &str, value: &str) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only on failure.
    Err(command.args(args).env(variable, value).exec())
}

#[cfg(not(unix))]
fn reexec_with(_variable: &str, _value: &str) -> std::io::Result<()> {
    Ok(())
}

/// The start of every program of this workspace (the binary, the examples): the OpenMP wait policy
/// ([`reexec_with_bounded_openmp_spinning`]), logging ([`init_logging`] with `default_filter`) and the
/// thread counts ([`init_threads`]). An error is a [`THREADS_VARIABLE`] that is not a count.
pub fn init_program(default_filter: &str) -> Result<ThreadPolicy, ThreadsError> {
    let reexec = reexec_with_bounded_openmp_spinning();
    init_logging(default_filter);
    if let Err(e) = reexec {
        tracing::warn!(
            "could not run again with {OPENMP_SPIN_COUNT}={BOUNDED_SPIN_COUNT} ({e}); set it yourself if other \
             programs share these CPUs"
        );
    }
    init_threads()
}

#[cfg(test)]
mod thread_and_log_tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(std::ffi::OsStr::new(""))), "an empty NO_COLOR is unset (no-color.org)");
        assert!(!use_colour(true, Some(std::ffi::OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn thread_policy_follows_the_variable_then_caps_libtorch_at_the_usable_cpus() {
        assert_eq!(thread_policy(Some(3), 2, 8, false), ThreadPolicy { torch: 3, rayon: Some(3) });
        assert_eq!(thread_policy(None, 2, 32, false), ThreadPolicy { torch: 2, rayon: None });
        assert_eq!(thread_policy(None, 16, 8, false), ThreadPolicy { torch: 8, rayon: None });
        assert_eq!(thread_policy(None, 2, 6, true), ThreadPolicy { torch: 6, rayon: None }, "OMP_NUM_THREADS wins");
    }

    #[test]
    fn thread_counts_must_be_positive_integers() {
        assert_eq!(parse_threads(std::ffi::OsStr::new(" 4 ")), Ok(4));
        for bad in ["0", "-1", "two", "", "1.5", "99999999999999999999", "5000"] {
            let err = parse_threads(std::ffi::OsStr::new(bad)).unwrap_err();
            assert_eq!(err.value, bad);
            assert!(err.to_string().contains(THREADS_VARIABLE), "{err}");
        }
    }
}
