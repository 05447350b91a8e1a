//! Finds the system's DPDK with pkg-config, generates bindings into
//! `OUT_DIR`, compiles the C shim with the same cflags, and binds Intel's
//! ipsec-mb library. Nothing generated is committed.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/shim/shim.h");
    println!("cargo:rerun-if-changed=src/shim/shim.c");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/ipsec_mb.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!(
                "\nerror: DPDK (pkg-config package `libdpdk`, version 22.11 or newer) was not found.\n\
                 On Debian 12 install it with: apt-get install libdpdk-dev pkg-config\n\
                 (or run `make deps`). pkg-config said: {e}\n"
            );
            std::process::exit(1);
        }
    };

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

    // Intel ipsec-mb: Debian's libipsec-mb-dev has no .pc file.
    println!("cargo:rustc-link-lib=IPSec_MB");
    let imb = bindgen::Builder::default()
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
        .expect("bindgen failed on intel-ipsec-mb.h (apt-get install libipsec-mb-dev)");
    imb.write_to_file(out.join("ipsec_mb.rs"))
        .expect("writing ipsec_mb.rs");
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
