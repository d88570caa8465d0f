//! Golden tests: The disabled driver, planned by the real plugin and rendered as FreeBSD (reference,
//! section 5) and Linux command lines.

mod common;

use common::*;
use kleene_disabled::Disabled;

#[test]
fn disabled_container_start_and_stop() {
    assert_eq!(freebsd(&Disabled, start("disabled", vec![])), jail_c_registered(&["ip4=disable", "ip6=disable"]));
    assert_eq!(freebsd(&Disabled, stop("disabled", vec![])), lines(&["jail -r c0ffee000001"]));
}

#[test]
fn linux_disabled_start() {
    let expected = ["mkdir <cgroup2>/kleene/c0ffee000001", "ip netns add c0ffee000001"];
    assert_eq!(linux(&Disabled, start("disabled", vec![])), lines(&expected));
}
