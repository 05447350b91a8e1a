//! Stands in for this crate's DPDK tests when the build found no DPDK:
//! they compile only with it, so this says they did not run (and fails
//! under `ESPRESSO_TEST_FULL`, where DPDK is a prerequisite).
#![cfg(not(have_dpdk))]

#[test]
fn dpdk_tests_need_dpdk() {
    testkit::require!(testkit::Need::Dpdk(false));
}
