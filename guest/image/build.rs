//! Link the guest as a static, non-PIE image laid out by `linker.ld`.
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let script = dir.join("linker.ld");
    for arg in [
        "-nostdlib".to_string(),
        "-static".to_string(),
        "-Wl,--build-id=none".to_string(),
        "-Wl,-z,max-page-size=0x1000".to_string(),
        format!("-Wl,-T,{}", script.display()),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=linker.ld");
}
