//! Golden tests: Custom networks, planned by the real plugin and rendered as FreeBSD (reference,
//! section 5) and Linux command lines.

mod common;

use common::*;
use kleene_custom::Custom;

#[test]
fn custom_network_only_checks_its_interface() {
    let net = network(4, "custom", "em0");
    let guard = "if ! ifconfig em0 >/dev/null 2>&1; then echo 'kleene: interface em0 does not exist; create it first or pick another with -i' >&2; exit 1; fi";
    assert_eq!(freebsd(&Custom, create(net.clone())), lines(&[guard]));
    assert!(freebsd(&Custom, remove(net)).is_empty());
}
