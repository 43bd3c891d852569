//! Build script shared by every crate that links libtorch (named in each one's `build = ...`).
//!
//! torch-sys tells its direct dependents where libtorch's shared libraries are
//! (`DEP_TCH_LIBTORCH_LIB`, from its `links = "tch"` metadata) but does not put that folder into
//! the binaries' run path. We do, so tests, examples and tools find libtorch at run time without
//! `LD_LIBRARY_PATH`. When the libtorch is a CUDA build we also force `libtorch_cuda` to stay linked:
//! no symbol of it is referenced directly, so `--as-needed` would drop it and CUDA would look absent.
//! The version of the libtorch linked against is recorded as `BRAIN_DIFFUSER_LIBTORCH_VERSION`.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = Path::new(&lib_dir);
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    if target_os == "linux" && lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    // A torch wheel has version.py one level above lib/; a libtorch archive has build-version.
    let version = std::fs::read_to_string(lib.join("../version.py"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("__version__ = ").map(|v| v.trim_matches(['\'', '"']).to_owned()))
        })
        .or_else(|| std::fs::read_to_string(lib.join("../build-version")).ok().map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BRAIN_DIFFUSER_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=BRAIN_DIFFUSER_LIBTORCH_LIB={}", lib.display());
}
