//! Binds Intel ipsec-mb (Debian's libipsec-mb-dev has no .pc file, so the
//! header is found by clang's search path). Without the header (or with
//! `ESPRESSO_WITHOUT_IPSEC_MB=1`) the crate builds empty and tells its
//! dependents through the `links` metadata (`found=0`, read as
//! `DEP_IPSEC_MB_FOUND`): the data plane then offers the aws-lc-rs and
//! pure-Rust backends only.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ipsec_mb.h");
    println!("cargo:rerun-if-env-changed=ESPRESSO_WITHOUT_IPSEC_MB");
    println!("cargo::rustc-check-cfg=cfg(ipsec_mb_found)");

    if env::var_os("ESPRESSO_WITHOUT_IPSEC_MB").is_some_and(|v| !v.is_empty() && v != "0") {
        return without("ESPRESSO_WITHOUT_IPSEC_MB is set");
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let imb = match bindgen::Builder::default()
        .header("src/ipsec_mb.h")
        .allowlist_function("alloc_mb_mgr|free_mb_mgr|init_mb_mgr_auto|imb_get_errno|imb_get_strerror|imb_get_version_str")
        .allowlist_type("IMB_.*|ImbMgr|chacha20_poly1305_context_data|gcm_key_data|gcm_context_data")
        .allowlist_var("IMB_.*")
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
    {
        Ok(b) => b,
        Err(e) => return without(&format!("intel-ipsec-mb.h: {e}")),
    };
    imb.write_to_file(out.join("ipsec_mb.rs"))
        .expect("writing ipsec_mb.rs");
    println!("cargo:rustc-link-lib=IPSec_MB");
    println!("cargo:rustc-cfg=ipsec_mb_found");
    println!("cargo:found=1");
}

fn without(why: &str) {
    println!(
        "cargo:warning=building without Intel ipsec-mb ({why}); ESP uses aws-lc-rs. On Debian 12: apt-get install libipsec-mb-dev (or make deps)"
    );
    println!("cargo:found=0");
}
