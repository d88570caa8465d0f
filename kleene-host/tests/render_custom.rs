//! Golden tests: Custom networks, planned by the real plugin and rendered as FreeBSD (reference,
//! section 5) and Linux command lines.

mod common;

use common::*;
use kleene_custom::Custom;

#[test]
fn custom_network_renders_nothing() {
    let net = network(4, "custom", "em0");
    assert!(freebsd(&Custom, create(net.clone())).is_empty());
    assert!(freebsd(&Custom, remove(net)).is_empty());
}
