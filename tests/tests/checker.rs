//! The consistency checker itself: silent on a consistent scene, and naming each kind of
//! inconsistency planted behind kleene's back (so a quiet checker means something).
#![cfg(target_os = "linux")]

use kleene_tests::checker::{kernel, Checker};
use kleene_tests::Sandbox;

fn id_of(sb: &Sandbox, container: &str) -> String {
    sb.kleene(&["container", "inspect", container]).json()["container"]["id"].as_str().unwrap().to_string()
}

/// Plant one inconsistency with `plant`, expect for each of `expected` a finding containing
/// all its words, then undo it with `repair` and expect silence again.
#[track_caller]
fn caught(sb: &Sandbox, plant: &str, expected: &[&[&str]], repair: &str) {
    sb.sh(plant).ok();
    let found = Checker::new(sb).findings();
    for words in expected {
        assert!(
            found.iter().any(|f| words.iter().all(|w| f.contains(w))),
            "after `{plant}`: no finding mentions {words:?}; findings: {found:#?}"
        );
    }
    sb.sh(repair).ok();
    let left = Checker::new(sb).findings();
    assert!(left.is_empty(), "after `{repair}`: still inconsistent: {left:#?}");
}

fn db(sb: &Sandbox) -> rusqlite::Connection {
    rusqlite::Connection::open(sb.dir.path().join("state/kleene.db")).unwrap()
}

#[test]
fn checker_is_silent_on_a_consistent_scene_and_names_each_planted_fault() {
    let sb = Sandbox::new("checker");
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.70.0.0/24", "--subnet6", "fd00:70::/64", "br"])
        .ok();
    sb.kleene(&["network", "create", "-t", "loopback", "--subnet", "10.71.0.0/24", "lo1"]).ok();
    for (name, driver, net) in [("v", "vnet", "br"), ("i", "ipnet", "br"), ("j", "ipnet", "lo1")] {
        sb.kleene(&["container", "create", "-l", driver, "-n", net, name]).ok();
        sb.kleene(&["container", "start", name]).ok();
    }
    sb.kleene(&["container", "create", "-l", "disabled", "d"]).ok();
    sb.kleene(&["container", "start", "d"]).ok();
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "br", "stopped"]).ok();
    Checker::new(&sb).assert_consistent();

    let (v, d, stopped) = (id_of(&sb, "v"), id_of(&sb, "d"), id_of(&sb, "stopped"));
    let pin = |id: &str| sb.dir.path().join("run/netns").join(id).display().to_string();
    let in_ns = |id: &str, cmd: &str| format!("nsenter --net={} {cmd}", pin(id));
    let endpoint = sb.kleene(&["container", "inspect", "v"]).json()["container_endpoints"][0]["id"].clone();
    let host_end = format!("kv{}", &endpoint.as_str().unwrap()[..12]);

    caught(
        &sb,
        "ip link add kv0123456789ab type bridge",
        &[&["kv0123456789ab", "leftover"]],
        "ip link del kv0123456789ab",
    );
    caught(
        &sb,
        "ip addr add 10.70.0.99/32 dev kleene0",
        &[&["10.70.0.99/32", "leftover"]],
        "ip addr del 10.70.0.99/32 dev kleene0",
    );
    // The ipnet container i holds 10.70.0.3: without its alias, it cannot bind it either.
    caught(
        &sb,
        "ip addr del 10.70.0.3/32 dev kleene0",
        &[&["lacks 10.70.0.3/32"], &["container i", "cannot bind its own address 10.70.0.3"]],
        "ip addr add 10.70.0.3/32 dev kleene0",
    );
    caught(&sb, "ip link set kleene1 down", &[&["kleene1 is down"]], "ip link set kleene1 up");
    caught(
        &sb,
        &format!("ip link set {host_end} nomaster"),
        &[&[host_end.as_str(), "should be an up veth on kleene0"]],
        &format!("ip link set {host_end} master kleene0"),
    );
    caught(
        &sb,
        &in_ns(&v, "ip addr add 10.70.0.200/24 dev eth0"),
        &[&["container v", "10.70.0.200/24", "leftover"]],
        &in_ns(&v, "ip addr del 10.70.0.200/24 dev eth0"),
    );
    caught(
        &sb,
        &in_ns(&v, "ip link add dummy7 type bridge"),
        &[&["container v", "dummy7"]],
        &in_ns(&v, "ip link del dummy7"),
    );
    caught(&sb, &in_ns(&d, "ip link set lo up"), &[&["container d (disabled)"]], &in_ns(&d, "ip link set lo down"));
    caught(
        &sb,
        "nft add element inet kleene containers4 '{ 10.70.0.77 }'",
        &[&["firewall", "10.70.0.77"]],
        "nft delete element inet kleene containers4 '{ 10.70.0.77 }'",
    );
    let cg = kernel::cgroup2_mount().unwrap().join("kleene").join(&stopped);
    caught(
        &sb,
        &format!("mkdir {}", cg.display()),
        &[&["container stopped", "cgroup", "left"]],
        &format!("rmdir {}", cg.display()),
    );
    caught(&sb, &format!("touch {}", pin(&stopped)), &[&["pin", "leftover"]], &format!("rm {}", pin(&stopped)));

    // A journal row nobody rolled back; any mutating command then finishes it.
    db(&sb).execute("INSERT INTO journal (what, undo) VALUES ('planted', '[]')", []).unwrap();
    let found = Checker::new(&sb).findings();
    assert!(found.iter().any(|f| f.contains("'planted' was never rolled back")), "{found:#?}");
    sb.kleene(&["system", "reconcile"]).ok();
    Checker::new(&sb).assert_consistent();

    // The pool must hold exactly the gateways and endpoints: take 10.71.0.5 from lo1's pool.
    let conn = db(&sb);
    let lo1: String = conn.query_row("SELECT id FROM networks WHERE name = 'lo1'", [], |r| r.get(0)).unwrap();
    let (start, end): (Vec<u8>, Vec<u8>) = conn
        .query_row("SELECT start, end FROM ipam_free WHERE network_id = ?1 AND family = 4", [&lo1], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let addr = |last: u8| [vec![0u8; 12], vec![10, 71, 0, last]].concat();
    conn.execute("DELETE FROM ipam_free WHERE network_id = ?1 AND family = 4", [&lo1]).unwrap();
    let insert = "INSERT INTO ipam_free (network_id, family, start, end) VALUES (?1, 4, ?2, ?3)";
    conn.execute(insert, rusqlite::params![lo1, start, addr(4)]).unwrap();
    conn.execute(insert, rusqlite::params![lo1, addr(6), end]).unwrap();
    let found = Checker::new(&sb).findings();
    assert!(found.iter().any(|f| f.contains("10.71.0.5") && f.contains("leaked")), "{found:#?}");
    conn.execute(
        "INSERT INTO ipam_free (network_id, family, start, end) VALUES (?1, 4, ?2, ?2)",
        rusqlite::params![lo1, addr(5)],
    )
    .unwrap();
    Checker::new(&sb).assert_consistent();

    // State says i moved to 10.70.0.4: its programs (and alias) still say 10.70.0.3.
    let moved = "UPDATE endpoints SET ip_address = ?1 WHERE container_id = ?2";
    conn.execute(moved, rusqlite::params!["10.70.0.4", id_of(&sb, "i")]).unwrap();
    let found = Checker::new(&sb).findings();
    for words in
        [["container i", "can bind 10.70.0.3, not its own"], ["container i", "cannot bind its own address 10.70.0.4"]]
    {
        assert!(found.iter().any(|f| words.iter().all(|w| f.contains(w))), "{words:?}: {found:#?}");
    }
    conn.execute(moved, rusqlite::params!["10.70.0.3", id_of(&sb, "i")]).unwrap();
    Checker::new(&sb).assert_consistent();

    // A removed container's cgroup is looked for too.
    sb.kleene(&["container", "rm", "stopped"]).ok();
    std::fs::create_dir(&cg).unwrap();
    let found = Checker::new(&sb).removed_containers([stopped.clone()]).findings();
    std::fs::remove_dir(&cg).unwrap();
    assert!(found.iter().any(|f| f.contains(&stopped) && f.contains("cgroup")), "{found:#?}");

    // A lost vnet host end (not repaired: the sandbox is torn down next).
    sb.sh(&format!("ip link del {host_end}")).ok();
    let found = Checker::new(&sb).findings();
    assert!(found.iter().any(|f| f.contains(&host_end) && f.contains("missing")), "{found:#?}");
}
