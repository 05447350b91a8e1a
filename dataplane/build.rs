//! `have_ipsec_mb` when `ipsec-mb-sys` found Intel ipsec-mb (its `links`
//! metadata): the `crypto::ipsec_mb` backend is built only then.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(have_ipsec_mb)");
    println!("cargo:rerun-if-env-changed=DEP_IPSEC_MB_FOUND");
    if std::env::var("DEP_IPSEC_MB_FOUND").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=have_ipsec_mb");
    }
}
