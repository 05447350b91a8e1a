//! Validation of the keys for real NICs and hugepages: PCI device strings,
//! per-port queues and descriptors, `hugepages`, `telemetry`,
//! `runtime_dir`.

use std::path::Path;

use super::*;

fn config(dataplane: &str, interface: &str) -> Result<GatewayConfig, ConfigError> {
    let text = format!(
        "[dataplane]\nworkers = 2\n{dataplane}\n[control]\nsocket = \"/run/espresso-test/gw.sock\"\n\
         [[interface]]\nname = \"wan\"\nrole = \"wan\"\n{interface}\n"
    );
    GatewayConfig::from_str_any_host(&text, "hw.toml")
}

#[track_caller]
fn assert_invalid(dataplane: &str, interface: &str, field: &str, words: &str) {
    let e = match config(dataplane, interface) {
        Ok(_) => panic!("accepted; expected an error at {field}"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert_eq!(e.field(), Some(field), "{msg}");
    assert!(msg.contains(words), "{msg:?} lacks {words:?}");
}

#[test]
fn defaults_are_one_queue_per_worker_hugepages_auto_and_telemetry_on() {
    let c = config("", "device = \"net_null0\"").unwrap();
    let i = &c.interfaces[0];
    assert_eq!(
        (i.rx_queues, i.tx_queues, i.rx_desc, i.tx_desc),
        (None, None, None, None)
    );
    assert_eq!(c.dataplane.hugepages, HugepageMode::Auto);
    assert!(c.dataplane.telemetry);
    // The control socket's directory.
    assert_eq!(c.dataplane.runtime_dir, Path::new("/run/espresso-test"));
}

#[test]
fn pci_addresses_are_accepted_and_written_in_full() {
    let c = config("", "device = \"03:00.1,rxq_cqe_comp_en=0\"").unwrap();
    assert_eq!(c.interfaces[0].device, "0000:03:00.1,rxq_cqe_comp_en=0");
    assert!(matches!(
        c.interfaces[0].device_kind(),
        Ok(crate::host::Device::Pci { .. })
    ));
    assert_invalid(
        "",
        "device = \"0000:03:00\"",
        "interface[0].device",
        "not a PCI address",
    );
    assert_invalid(
        "",
        "device = \"0000:03:40.0\"",
        "interface[0].device",
        "not a PCI address",
    );
}

#[test]
fn one_pci_device_is_one_interface() {
    let text = "[[interface]]\nname = \"a\"\ndevice = \"0000:03:00.0\"\nrole = \"lan\"\n\
                [[interface]]\nname = \"b\"\ndevice = \"03:00.0\"\nrole = \"wan\"\n";
    let e = GatewayConfig::from_str(text, "hw.toml").unwrap_err();
    assert_eq!(e.field(), Some("interface[1].device"), "{e}");
    assert!(e.to_string().contains("already interface[0]"), "{e}");
}

#[test]
fn queues_fit_the_workers() {
    let c = config(
        "",
        "device = \"net_null0\"\nrx_queues = 1\ntx_queues = 4\nrx_desc = 512\ntx_desc = 4096",
    )
    .unwrap();
    let i = &c.interfaces[0];
    assert_eq!(
        (i.rx_queues, i.tx_queues, i.rx_desc, i.tx_desc),
        (Some(1), Some(4), Some(512), Some(4096))
    );
    let dev = "device = \"net_null0\"\n";
    assert_invalid(
        "",
        &format!("{dev}rx_queues = 0"),
        "interface[0].rx_queues",
        "out of range 1..=64",
    );
    assert_invalid(
        "",
        &format!("{dev}tx_queues = 65"),
        "interface[0].tx_queues",
        "out of range 1..=64",
    );
    assert_invalid(
        "",
        &format!("{dev}rx_queues = 3"),
        "interface[0].rx_queues",
        "needs a worker",
    );
    assert_invalid(
        "",
        &format!("{dev}tx_queues = 1"),
        "interface[0].tx_queues",
        "TX queue of its own",
    );
}

#[test]
fn descriptors_are_powers_of_two_in_range() {
    let dev = "device = \"net_null0\"\n";
    for (key, v) in [
        ("rx_desc", 1000),
        ("tx_desc", 0),
        ("rx_desc", 16),
        ("tx_desc", 65536),
    ] {
        assert_invalid(
            "",
            &format!("{dev}{key} = {v}"),
            &format!("interface[0].{key}"),
            "not a power of two in 32..=32768",
        );
    }
}

#[test]
fn hugepages_telemetry_and_runtime_dir() {
    let dev = "device = \"net_null0\"";
    let c = config(
        "hugepages = \"on\"\ntelemetry = false\nruntime_dir = \"/run/gw-a\"",
        dev,
    )
    .unwrap();
    assert_eq!(c.dataplane.hugepages, HugepageMode::On);
    assert!(!c.dataplane.telemetry);
    assert_eq!(c.dataplane.runtime_dir, Path::new("/run/gw-a"));
    assert_eq!(
        config("hugepages = \"off\"", dev)
            .unwrap()
            .dataplane
            .hugepages,
        HugepageMode::Off
    );
    assert_invalid(
        "hugepages = \"yes\"",
        dev,
        "dataplane.hugepages",
        "expected \"auto\", \"on\" or \"off\"",
    );
    assert_invalid(
        "runtime_dir = \"run\"",
        dev,
        "dataplane.runtime_dir",
        "absolute",
    );
    assert_invalid(
        "eal_args = [\"--no-huge\"]",
        dev,
        "dataplane.eal_args[0]",
        "dataplane.hugepages",
    );
    assert_invalid(
        "eal_args = [\"-a\", \"0000:03:00.0\"]",
        dev,
        "dataplane.eal_args[0]",
        "PCI address",
    );
}
