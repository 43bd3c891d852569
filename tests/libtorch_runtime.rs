//! The libtorch set-up: binaries find the libtorch they were linked against, at run time, without
//! LD_LIBRARY_PATH, and it is the version tch 0.24 expects.

use brain_diffuser::runtime::{LibtorchInfo, loaded_libtorch_paths, parse_device, parse_device_name};
use tch::Device;

#[test]
fn built_against_libtorch_2_11_0() {
    let info = LibtorchInfo::query();
    assert!(info.version.starts_with("2.11.0"), "built against libtorch {}", info.version);
    assert!(info.threads >= 1, "libtorch reports {} threads", info.threads);
}

#[test]
fn the_loaded_libtorch_is_the_linked_one() {
    // Make sure libtorch is mapped, then compare its folder with the one recorded at build time.
    let sum = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]).sum(tch::Kind::Float).double_value(&[]);
    assert_eq!(sum, 6.0);
    let loaded = loaded_libtorch_paths();
    let cpu = loaded
        .iter()
        .find(|p| p.ends_with("libtorch_cpu.so"))
        .unwrap_or_else(|| panic!("libtorch_cpu.so is not mapped; mapped: {loaded:?}"));
    let loaded_dir = std::fs::canonicalize(std::path::Path::new(cpu).parent().expect("a file has a folder"))
        .expect("the loaded library's folder exists");
    let linked_dir = std::fs::canonicalize(LibtorchInfo::query().lib_dir).expect("the linked folder exists");
    assert_eq!(loaded_dir, linked_dir);
}

#[test]
fn runs_without_ld_library_path() {
    // The test binary itself was started by cargo, which may set LD_LIBRARY_PATH; what matters is
    // that the run path baked into it names libtorch's folder.
    let exe = std::env::current_exe().expect("the test binary has a path");
    let bytes = std::fs::read(&exe).expect("the test binary is readable");
    let lib_dir = LibtorchInfo::query().lib_dir;
    let found = bytes.windows(lib_dir.len()).any(|window| window == lib_dir.as_bytes());
    assert!(found, "{} has no run path entry for {lib_dir}", exe.display());
}

#[test]
fn device_names_parse() {
    assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
    assert_eq!(parse_device_name("--device", "cuda"), Ok(Device::Cuda(0)));
    assert_eq!(parse_device_name("--device", "cuda:3"), Ok(Device::Cuda(3)));
    assert!(parse_device("gpu").is_err());
    assert!(parse_device("cuda:x").is_err());
}
