//! Golden tests: The host driver, planned by the real plugin and rendered as FreeBSD (reference,
//! section 5) and Linux command lines.

mod common;

use common::*;
use kleene_plugin_host_driver::HostDriver;

#[test]
fn host_container_start_and_stop() {
    assert_eq!(freebsd(&HostDriver, start("host", vec![])), jail_c_registered(&["ip4=inherit", "ip6=inherit"]));
    assert_eq!(freebsd(&HostDriver, stop("host", vec![])), lines(&["jail -r c0ffee000001"]));
}

#[test]
fn undo_renders_like_apply() {
    let mut renderer = FreeBsdRenderer::default();
    renderer.undo(&Op::DestroySandbox { sandbox: CID.into(), stack: Stack::Host }).unwrap();
    assert_eq!(renderer.lines(), ["jail -r c0ffee000001"]);
}
