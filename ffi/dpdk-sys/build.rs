//! Finds the system's DPDK with pkg-config, generates bindings into
//! `OUT_DIR` and compiles the C shim with the same cflags. Nothing generated
//! is committed.
//!
//! Without DPDK (or with `ESPRESSO_WITHOUT_DPDK=1`) the crate builds empty
//! and tells its dependents through the `links` metadata (`found=0`, read
//! as `DEP_RTE_EAL_FOUND`): the pure crates then build and test on any
//! machine with Rust, and the crates that need DPDK leave their DPDK parts
//! out with a warning.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/shim/shim.h");
    println!("cargo:rerun-if-changed=src/shim/shim.c");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/ipsec_mb.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=ESPRESSO_WITHOUT_DPDK");
    println!("cargo::rustc-check-cfg=cfg(dpdk_found)");

    let wanted = env::var_os("ESPRESSO_WITHOUT_DPDK").is_none_or(|v| v.is_empty() || v == "0");
    if !wanted {
        return without_dpdk("ESPRESSO_WITHOUT_DPDK is set");
    }
    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => return without_dpdk(&e.to_string()),
    };
    println!("cargo:found=1");
    println!("cargo:rustc-cfg=dpdk_found");

    // The exact cflags DPDK wants (`-include rte_config.h`, `-march=...`,
    // include paths): the shim and bindgen both use them, so the structs
    // bindgen lays out are the ones the shim compiles against.
    let cflags = pkg_config_cflags();
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    let mut build = cc::Build::new();
    build.file("src/shim/shim.c").opt_level(3).warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    for inc in &dpdk.include_paths {
        build.include(inc);
    }
    build.compile("espresso_shim");

    let bindings = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_args(cflags.iter())
        .clang_args(
            dpdk.include_paths
                .iter()
                .map(|p| format!("-I{}", p.display())),
        )
        .allowlist_function("espresso_.*")
        .allowlist_function("rte_eal_init|rte_eal_cleanup|rte_strerror|rte_eal_get_runtime_dir|rte_thread_register|rte_thread_unregister")
        .allowlist_function("rte_pktmbuf_pool_create|rte_mempool_free|rte_mempool_avail_count|rte_mempool_in_use_count|rte_pktmbuf_free_bulk")
        .allowlist_function("rte_mempool_create_empty|rte_mempool_set_ops_byname|rte_mbuf_best_mempool_ops|rte_pktmbuf_pool_init|rte_pktmbuf_init|rte_mempool_populate_iova|rte_mempool_obj_iter|rte_mempool_calc_obj_size|rte_eal_has_hugepages|rte_eal_iova_mode")
        .allowlist_type("rte_pktmbuf_pool_private|rte_mempool_objsz")
        .allowlist_var("RTE_MEMPOOL_F_NO_IOVA_CONTIG")
        .allowlist_function("rte_eth_.*|rte_dev_probe|rte_dev_remove|rte_socket_id|rte_get_tsc_hz|rte_lcore_count|rte_get_main_lcore")
        .allowlist_var("RTE_ETH_.*|RTE_PKTMBUF_HEADROOM|RTE_MBUF_DEFAULT_BUF_SIZE|RTE_MAX_ETHPORTS|SOCKET_ID_ANY|RTE_ETH_NAME_MAX_LEN")
        .blocklist_function("rte_eth_dev_.*_capability_name|rte_eth_.*_capability_name")
        .opaque_type("rte_arp_ipv4|rte_arp_hdr|rte_l2tpv2_combined_msg_hdr|rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on the DPDK headers");
    bindings
        .write_to_file(out.join("dpdk.rs"))
        .expect("writing dpdk.rs");
}

fn pkg_config_cflags() -> Vec<String> {
    let output = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("running pkg-config --cflags libdpdk");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        // -I paths are passed separately; keep -include, -march, -D, ...
        .filter(|f| !f.starts_with("-I"))
        .map(str::to_owned)
        .collect::<Vec<_>>()
        // `-include rte_config.h` comes as two words; keep them together.
        .into_iter()
        .collect()
}

/// No DPDK: an empty crate and `found=0` for the dependents.
fn without_dpdk(why: &str) {
    let first = why.lines().next().unwrap_or_default();
    println!(
        "cargo:warning=building without DPDK ({first}); the gateway binary, the DPDK layer and the lab are left out. On Debian 12: apt-get install libdpdk-dev pkg-config (or make deps)"
    );
    println!("cargo:found=0");
}
