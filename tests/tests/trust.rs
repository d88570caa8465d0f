//! kleene runs as root and trusts nothing it reads from disk without checking who could have
//! written it: state and run dirs that others can write are refused, and a database crafted
//! to point kleene at someone else's file, cgroup or interface is refused by the next
//! ordinary command, which leaves all of them alone.

use kleene_tests::Sandbox;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn create_bridge(sb: &Sandbox, name: &str, n: u8) -> kleene_tests::Run {
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", &format!("10.{n}.0.0/24"), name])
}

fn networks(sb: &Sandbox) -> usize {
    sb.kleene(&["network", "ls", "--json"]).json().as_array().map_or(0, Vec::len)
}

#[test]
fn state_and_run_dirs_others_can_write_are_refused_and_nothing_changes() {
    let sb = Sandbox::new("trust-dirs");
    let (state, run) = (sb.dir.path().join("state"), sb.dir.path().join("run"));
    fs::create_dir_all(&state).unwrap();
    chmod(&state, 0o777);
    let err = create_bridge(&sb, "n", 60).err();
    assert_eq!(
        err,
        format!(
            "kleene: state dir {0}: refusing to use it: {0} is writable by group or others (chmod go-w it)",
            state.display()
        )
    );
    assert!(!state.join("kleene.db").exists(), "no database was created in the unsafe dir");
    assert!(!sb.links().contains(&"kleene0".to_string()));
    // Sticky does not make the state dir itself safe; a foreign owner is refused too.
    chmod(&state, 0o1777);
    assert!(create_bridge(&sb, "n", 60).err().contains("is writable by group or others"));
    chmod(&state, 0o755);
    std::os::unix::fs::chown(&state, Some(65534), None).unwrap();
    let err = create_bridge(&sb, "n", 60).err();
    assert!(err.contains(&format!("{} is owned by uid 65534, not root or you", state.display())), "{err}");
    std::os::unix::fs::chown(&state, Some(0), None).unwrap();
    assert!(!state.join("kleene.db").exists());

    // A safe state dir, but a run dir anyone can write.
    fs::create_dir_all(&run).unwrap();
    chmod(&run, 0o777);
    let err = create_bridge(&sb, "n", 60).err();
    assert_eq!(
        err,
        format!(
            "kleene: run dir {0}: refusing to use it: {0} is writable by group or others (chmod go-w it)",
            run.display()
        )
    );
    assert_eq!(networks(&sb), 0, "state unchanged");
    assert!(!sb.links().contains(&"kleene0".to_string()), "host unchanged");

    chmod(&run, 0o755);
    create_bridge(&sb, "n", 60).ok();
    assert!(sb.links().contains(&"kleene0".to_string()));
}

/// The cgroup2 mount, from mountinfo.
fn cgroup2() -> PathBuf {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find(|l| l.contains(" - cgroup2 ")).map(|l| l.split(' ').nth(4).unwrap().into()).unwrap()
}

/// A cgroup outside kleene's with a process in it; removed on drop.
struct ForeignCgroup {
    path: PathBuf,
    child: std::process::Child,
}

impl ForeignCgroup {
    fn new(tag: &str) -> ForeignCgroup {
        let path = cgroup2().join(format!("kleene-test-{tag}-{}", std::process::id()));
        fs::create_dir_all(&path).unwrap();
        let child = Command::new("sleep").arg("300").spawn().unwrap();
        fs::write(path.join("cgroup.procs"), child.id().to_string()).unwrap();
        ForeignCgroup { path, child }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for ForeignCgroup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir(&self.path);
    }
}

/// Write one interrupted operation into the journal, as a crash would leave it.
fn plant_journal(db: &rusqlite::Connection, undo: &Value) {
    db.execute("DELETE FROM journal", []).unwrap();
    db.execute("INSERT INTO journal (what, undo) VALUES ('crafted', ?1)", [undo.to_string()]).unwrap();
}

#[test]
fn a_crafted_database_is_refused_and_the_host_keeps_its_file_cgroup_and_interface() {
    let sb = Sandbox::new("trust-db");
    create_bridge(&sb, "n", 61).ok();
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "n", "v"]).ok();
    let db = rusqlite::Connection::open(sb.dir.path().join("state/kleene.db")).unwrap();
    // Things that are not kleene's: a file next to the run dir, a cgroup with a process, and
    // an interface of the (test's) host.
    let victim = sb.dir.path().join("victim");
    fs::write(&victim, "not kleene's").unwrap();
    let mut cgroup = ForeignCgroup::new("victim");
    let foreign_cg = format!("../{}", cgroup.path.file_name().unwrap().to_str().unwrap());
    sb.sh("ip link add hostbr0 type bridge").ok();
    let next_command = |sb: &Sandbox| create_bridge(sb, "m", 62).err();

    // (a) A container whose id climbs out of the run dir, stopped by an ordinary `rm -f`.
    db.execute("INSERT INTO containers (id, name, driver, running) VALUES ('../../victim', 'evil', 'vnet', 1)", [])
        .unwrap();
    let err = sb.kleene(&["container", "rm", "-f", "evil"]).err();
    assert!(err.contains("container id '../../victim' is not 12 lowercase hex digits"), "{err}");
    assert!(err.contains("restore it from a backup"), "{err}");
    assert!(victim.exists(), "the file outside the run dir survives");
    db.execute("DELETE FROM containers WHERE name = 'evil'", []).unwrap();

    // (b) An interrupted operation whose undo destroys a sandbox outside the run dir.
    plant_journal(&db, &serde_json::json!([{"op": "destroy_sandbox", "sandbox": "../../victim", "stack": "private"}]));
    let err = next_command(&sb);
    assert!(err.contains("refusing to roll back 'crafted': it names container '../../victim'"), "{err}");
    assert!(victim.exists(), "the file outside the run dir survives");

    // (c) ... one that destroys the sandbox of someone else's cgroup (killing its processes).
    plant_journal(&db, &serde_json::json!([{"op": "destroy_sandbox", "sandbox": foreign_cg, "stack": "restricted"}]));
    let err = next_command(&sb);
    assert!(err.contains(&format!("it names container '{foreign_cg}'")), "{err}");
    assert!(cgroup.alive() && cgroup.path.exists(), "the foreign cgroup and its process survive");

    // (d) ... one that deletes, or takes down, an interface kleene neither records nor made.
    for undo in [
        serde_json::json!([{"op": "delete_link", "name": "hostbr0", "kind": "bridge"}]),
        serde_json::json!([{"op": "set_link_down", "name": "lo", "sandbox": null}]),
    ] {
        plant_journal(&db, &undo);
        let err = next_command(&sb);
        assert!(err.contains("which kleene neither records nor created"), "{err}");
    }
    assert!(sb.links().contains(&"hostbr0".to_string()), "the host's interface survives");
    assert!(sb.sh("ip -br link show lo").ok().contains("UP"), "lo stays up");

    // (e) An endpoint address outside its network (an ipnet address lands on the host).
    db.execute("DELETE FROM journal", []).unwrap();
    sb.kleene(&["container", "create", "-l", "ipnet", "-n", "n", "i"]).ok();
    let set_address = |ip: &str| {
        let sql =
            "UPDATE endpoints SET ip_address = ?1 WHERE container_id = (SELECT id FROM containers WHERE name = 'i')";
        db.execute(sql, [ip]).unwrap();
    };
    set_address("127.0.0.1");
    let err = sb.kleene(&["container", "start", "i"]).err();
    assert!(err.contains("address of a container on network n: 127.0.0.1 is outside 10.61.0.0/24"), "{err}");
    assert!(!sb.sh("ip -br addr show dev kleene0").ok().contains("127.0.0.1"), "no host address added");
    set_address("10.61.0.9");
    plant_journal(&db, &serde_json::json!([{"op": "delete_link", "name": "hostbr0", "kind": "bridge"}]));

    // Nothing ran and nothing was recorded; the refused row stays for the operator to see.
    assert_eq!(networks(&sb), 1);
    let rows: i64 = db.query_row("SELECT count(*) FROM journal", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1);
    // With the crafted row gone, the same command works.
    db.execute("DELETE FROM journal", []).unwrap();
    create_bridge(&sb, "m", 62).ok();
    sb.sh("ip link del hostbr0").ok();
}
