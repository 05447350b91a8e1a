//! `have_dpdk` when `dpdk-sys` found DPDK (its `links` metadata).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(have_dpdk)");
    println!("cargo:rerun-if-env-changed=DEP_RTE_EAL_FOUND");
    if std::env::var("DEP_RTE_EAL_FOUND").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=have_dpdk");
    }
}
