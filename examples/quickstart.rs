//! Quickstart: checks that this machine can run brain-diffuser.
//!
//! Prints the libtorch this program was built against and really loaded, whether CUDA is usable,
//! the device models would run on and libtorch's thread count, then solves a seeded linear system
//! on that device and checks the answer. The reconstruction pipeline itself is not implemented yet;
//! when it is, this example will run it end to end on a synthetic mini-NSD.
//!
//! Run with `scripts/quickstart` (sets up libtorch on first use), or `cargo run --example quickstart`.

use std::process::ExitCode;

use brain_diffuser::runtime::{LibtorchInfo, default_device, loaded_libtorch_paths};
use tch::{Device, Kind, Tensor};

/// Seed of the random system, recorded in the output.
const SEED: i64 = 2023;
/// Size of the linear system solved as a check.
const N: i64 = 256;

fn main() -> ExitCode {
    let info = LibtorchInfo::query();
    println!("brain-diffuser quickstart (environment check)");
    println!("  libtorch built against : {}", info.version);
    println!("  libtorch lib dir       : {}", info.lib_dir);
    match loaded_libtorch_paths().iter().find(|p| p.ends_with("libtorch_cpu.so")) {
        Some(path) => println!("  libtorch loaded from   : {path}"),
        None => println!("  libtorch loaded from   : (not visible in /proc/self/maps on this system)"),
    }
    println!(
        "  CUDA available         : {} ({} device(s), cuDNN {})",
        info.cuda_available, info.cuda_devices, info.cudnn_available
    );
    let device = match default_device() {
        Ok(device) => device,
        Err(message) => {
            eprintln!("error: BRAIN_DIFFUSER_DEVICE: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!("  device                 : {}", describe(device));
    println!("  intra-op threads       : {}", info.threads);

    match check_linear_solve(device) {
        Ok(residual) => println!(
            "  check                  : solved a seeded {N}x{N} SPD system (seed {SEED}), relative residual {residual:.2e} -- OK"
        ),
        Err(message) => {
            eprintln!("  check                  : FAILED: {message}");
            return ExitCode::FAILURE;
        }
    }
    println!();
    println!("The brain-diffuser pipeline is NOT implemented yet: this quickstart only checks the environment.");
    println!("See README.md for the state of each stage.");
    ExitCode::SUCCESS
}

fn describe(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(index) => format!("cuda:{index}"),
        other => format!("{other:?}"),
    }
}

/// Solves A x = b for a seeded symmetric positive definite A on `device`, in f64, and returns the
/// relative residual ||A x - b|| / ||b||, failing if it exceeds 1e-10 or the solve fails.
fn check_linear_solve(device: Device) -> Result<f64, String> {
    tch::manual_seed(SEED);
    let options = (Kind::Double, device);
    let b_matrix = Tensor::randn([N, N], options);
    let a = b_matrix.matmul(&b_matrix.tr()) + Tensor::eye(N, options) * (N as f64);
    let rhs = Tensor::randn([N, 1], options);
    let x = Tensor::f_linalg_solve(&a, &rhs, true).map_err(|e| format!("linalg_solve: {e}"))?;
    let residual = (a.matmul(&x) - &rhs).norm().double_value(&[]) / rhs.norm().double_value(&[]);
    if residual.is_finite() && residual < 1e-10 {
        Ok(residual)
    } else {
        Err(format!("relative residual {residual:e} exceeds 1e-10"))
    }
}
