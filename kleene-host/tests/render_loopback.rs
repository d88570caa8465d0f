//! Golden tests: Loopback networks, planned by the real plugin and rendered as FreeBSD (reference,
//! section 5) and Linux command lines.

mod common;

use common::*;
use kleene_loopback::Loopback;

#[test]
fn loopback_network_create_and_remove() {
    let net = loopback();
    assert_eq!(
        freebsd(&Loopback, create(net.clone())),
        guarded(
            "kleene0",
            &["ifconfig lo create name kleene0", "on_failure 'ifconfig kleene0 destroy'", "ifconfig kleene0 up"]
        )
    );
    assert_eq!(freebsd(&Loopback, remove(net)), lines(&["ifconfig kleene0 destroy"]));
}

#[test]
fn linux_loopback_create_and_remove() {
    let net = loopback();
    assert_eq!(
        linux(&Loopback, create(net.clone())),
        lines(&["ip link add kleene0 type dummy", "ip link set kleene0 up"])
    );
    assert_eq!(linux(&Loopback, remove(net)), lines(&["ip link del kleene0"]));
}
