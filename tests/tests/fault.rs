//! Fault injection: `kill -9` at random moments of every mutating command (and, for a quarter
//! of the injections, the engine's abort hook before a random step), then the same
//! command again (the ordinary command that must first roll back through the journal), then
//! the checker comparing state with the kernel. Each run in a namespace of its own.
//!
//! Bounded for CI by `KLEENE_FAULT_INJECTIONS` (default 100) and `KLEENE_FAULT_SECONDS`
//! (default 75); `KLEENE_FAULT_SEED` replays a run's sequence of commands and kill points
//! (process timing still varies). `KLEENE_FAULT_KEEP_GOING=1` (scripts/fault-inject.sh)
//! records inconsistencies and carries on in a fresh namespace instead of stopping.
#![cfg(target_os = "linux")]

use kleene_tests::checker::state::StateView;
use kleene_tests::checker::{driver_stack, kernel, Checker, Stack};
use kleene_tests::Sandbox;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The networks the workload creates and removes: (name, type, subnet, subnet6).
const NETWORKS: [(&str, &str, &str, &str); 3] = [
    ("b0", "bridge", "10.80.0.0/24", "fd00:80::/64"),
    ("b1", "bridge", "10.81.0.0/24", "fd00:81::/64"),
    ("l0", "loopback", "10.82.0.0/24", "fd00:82::/64"),
];

/// The containers it creates, starts, stops, connects and removes: (name, driver).
const CONTAINERS: [(&str, &str); 5] =
    [("v0", "vnet"), ("v1", "vnet"), ("i0", "ipnet"), ("i1", "ipnet"), ("d0", "disabled")];

/// Network types a driver may join (the drivers' matrix).
fn joins(driver: &str, net_type: &str) -> bool {
    match driver_stack(driver) {
        Some(Stack::Private) => net_type == "bridge",
        Some(Stack::Restricted) => true,
        _ => false,
    }
}

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One mutating command of the workload.
#[derive(Clone, Debug)]
enum Cmd {
    NetCreate(usize),
    NetRm(&'static str),
    Create { name: &'static str, driver: &'static str, network: Option<&'static str> },
    Start(&'static str),
    Stop(&'static str),
    RmForce(&'static str),
    Connect(&'static str, &'static str),
    Disconnect(&'static str, &'static str),
}

impl Cmd {
    fn args(&self) -> Vec<String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Cmd::NetCreate(i) => {
                let (name, kind, s4, s6) = NETWORKS[*i];
                v(&["network", "create", "-t", kind, "--subnet", s4, "--subnet6", s6, name])
            }
            Cmd::NetRm(n) => v(&["network", "rm", n]),
            Cmd::Create { name, driver, network: None } => v(&["container", "create", "-l", driver, name]),
            Cmd::Create { name, driver, network: Some(n) } => v(&["container", "create", "-l", driver, "-n", n, name]),
            Cmd::Start(c) => v(&["container", "start", c]),
            Cmd::Stop(c) => v(&["container", "stop", c]),
            Cmd::RmForce(c) => v(&["container", "rm", "-f", c]),
            Cmd::Connect(n, c) => v(&["network", "connect", n, c]),
            Cmd::Disconnect(n, c) => v(&["network", "disconnect", n, c]),
        }
    }

    /// The command's kind, for its typical duration (kill delays are drawn within it).
    fn kind(&self) -> String {
        let args = self.args();
        format!("{} {}", args[0], args[1])
    }

    /// Whether the command's effect is in `v` (so running it again must be refused).
    fn done(&self, v: &StateView) -> bool {
        let connected = |n: &str, c: &str| match (v.network_named(n), v.container_named(c)) {
            (Some(n), Some(c)) => v.endpoint(&n.id, &c.id).is_some(),
            _ => false,
        };
        match self {
            Cmd::NetCreate(i) => v.network_named(NETWORKS[*i].0).is_some(),
            Cmd::NetRm(n) => v.network_named(n).is_none(),
            Cmd::Create { name, .. } => v.container_named(name).is_some(),
            Cmd::Start(c) => v.container_named(c).is_some_and(|c| c.running),
            Cmd::Stop(c) => v.container_named(c).is_some_and(|c| !c.running),
            Cmd::RmForce(c) => v.container_named(c).is_none(),
            Cmd::Connect(n, c) => connected(n, c),
            Cmd::Disconnect(n, c) => !connected(n, c),
        }
    }

    /// kleene's refusal of a command whose effect is already there.
    fn refusal(&self) -> String {
        let msg = match self {
            Cmd::NetCreate(_) => "network name is already taken".to_string(),
            Cmd::NetRm(_) => "network not found".to_string(),
            Cmd::Create { .. } => "container name is already taken".to_string(),
            Cmd::Start(c) => format!("container {c} is already running"),
            Cmd::Stop(c) => format!("container {c} is not running"),
            Cmd::RmForce(_) => "container not found".to_string(),
            Cmd::Connect(..) => "container already connected to the network".to_string(),
            Cmd::Disconnect(..) => "endpoint configuration not found".to_string(),
        };
        format!("kleene: {msg}")
    }

    /// `rm -f` of a running container commits twice (stop, then rm): a kill between the two
    /// leaves the first commit, which is not the command's whole effect.
    fn commits_twice(&self) -> bool {
        matches!(self, Cmd::RmForce(_))
    }
}

/// Every command valid in state `v`, with a weight (creations and starts weigh more than
/// removals, so the state stays rich: running containers on several networks).
fn candidates(v: &StateView) -> Vec<(u64, Cmd)> {
    let mut out = Vec::new();
    for (i, (name, ..)) in NETWORKS.iter().enumerate() {
        out.push(if v.network_named(name).is_some() { (1, Cmd::NetRm(name)) } else { (3, Cmd::NetCreate(i)) });
    }
    for (name, driver) in CONTAINERS {
        let Some(c) = v.container_named(name) else {
            let fits: Vec<&'static str> = NETWORKS
                .iter()
                .filter(|(n, kind, ..)| joins(driver, kind) && v.network_named(n).is_some())
                .map(|n| n.0)
                .collect();
            out.push((2, Cmd::Create { name, driver, network: None }));
            fits.into_iter().for_each(|n| out.push((1, Cmd::Create { name, driver, network: Some(n) })));
            continue;
        };
        out.push(if c.running { (2, Cmd::Stop(name)) } else { (3, Cmd::Start(name)) });
        out.push((1, Cmd::RmForce(name)));
        let live = if c.running { 2 } else { 1 };
        for (net, ..) in NETWORKS.iter().filter(|(_, kind, ..)| joins(driver, kind)) {
            let Some(n) = v.network_named(net) else { continue };
            out.push(if v.endpoint(&n.id, &c.id).is_some() {
                (2 * live, Cmd::Disconnect(net, name))
            } else {
                (3 * live, Cmd::Connect(net, name))
            });
        }
    }
    out
}

fn pick(rng: &mut Rng, cands: &[(u64, Cmd)]) -> Cmd {
    let total: u64 = cands.iter().map(|(w, _)| w).sum();
    let mut at = rng.below(total);
    for (w, c) in cands {
        if at < *w {
            return c.clone();
        }
        at -= w;
    }
    unreachable!("weights cover the draw")
}

/// Where the command dies.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// SIGKILL from outside after this long: anywhere, inside a step or a commit included.
    After(Duration),
    /// The engine's own hook (`KLEENE_FAULT_INJECT=abort-at:N`) aborts before step N:
    /// exactly between two host changes, with the journal row written.
    BeforeStep(u64),
}

/// What one injection did, for the report.
struct Injection {
    n: usize,
    cmd: Cmd,
    point: KillPoint,
    killed: bool,
    journal_left: bool,
    /// The ordinary command that followed, when it was not the same again.
    follow_up: Option<Cmd>,
}

impl std::fmt::Display for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match self.point {
            KillPoint::After(d) => format!("killed after {d:?}"),
            KillPoint::BeforeStep(n) => format!("aborted before step {n}"),
        };
        let how = if self.killed { "" } else { ", but it finished first" };
        let journal = if self.journal_left { ", journal row left" } else { "" };
        let next = match &self.follow_up {
            Some(c) => format!(", then `kleene {}`", c.args().join(" ")),
            None => ", then the same again".to_string(),
        };
        write!(f, "#{} `kleene {}` {at}{how}{journal}{next}", self.n, self.cmd.args().join(" "))
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Typical duration of each kind of command, in microseconds (learnt from the runs that
/// finished before their kill).
#[derive(Default)]
struct Durations(HashMap<String, u64>);

impl Durations {
    fn of(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(40_000)
    }

    fn record(&mut self, kind: String, took: Duration) {
        let us = took.as_micros() as u64;
        let avg = self.0.entry(kind).or_insert(us);
        *avg = (*avg * 3 + us) / 4;
    }
}

/// Run `cmd` and have it die at `point`, as a crash would. Returns whether it died before
/// finishing, and how long it ran when it finished by itself.
fn run_and_kill(sb: &Sandbox, cmd: &Cmd, point: KillPoint) -> (bool, Option<Duration>) {
    let started = Instant::now();
    let mut command = sb.kleene_command(&cmd.args().iter().map(String::as_str).collect::<Vec<_>>());
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let delay = match point {
        KillPoint::After(d) => d,
        KillPoint::BeforeStep(n) => {
            let status = command.env("KLEENE_FAULT_INJECT", format!("abort-at:{n}")).status().expect("run kleene");
            return (status.signal() == Some(libc::SIGABRT), None);
        }
    };
    let mut child = command.spawn().expect("spawn kleene");
    // Poll rather than sleep, to learn the command's natural duration when it is quicker.
    while started.elapsed() < delay {
        if child.try_wait().expect("poll kleene").is_some() {
            return (false, Some(started.elapsed()));
        }
        std::thread::sleep(Duration::from_micros(200).min(delay.saturating_sub(started.elapsed())));
    }
    // Until it is waited for, the child's pid cannot be reused: killing it is safe even if
    // it has exited in the meantime.
    let _ = child.kill();
    let status = child.wait().expect("wait kleene");
    (status.signal() == Some(libc::SIGKILL), None)
}

/// One injection: the command killed, one ordinary command (usually the same again, as an
/// operator would retry; one in four times another valid command), then every check.
/// Returns the inconsistencies found.
fn inject(sb: &Sandbox, inj: &mut Injection, rng: &mut Rng, run: &mut RunStats) -> Vec<String> {
    let state_dir = sb.dir.path().join("state");
    let read = || StateView::read(&state_dir).expect("state readable");
    let before = read();
    let (killed, natural) = run_and_kill(sb, &inj.cmd, inj.point);
    inj.killed = killed;
    if let Some(took) = natural {
        run.durations.record(inj.cmd.kind(), took);
    }
    let mid = read();
    inj.journal_left = !mid.journal.is_empty();
    let mut found = Vec::new();
    let was_done = inj.cmd.done(&mid);
    if !was_done && !inj.cmd.commits_twice() && mid.committed() != before.committed() {
        found.push("state changed although the command's effect is not there (not atomic)".to_string());
    }
    if rng.below(4) == 0 {
        // Another command valid in the state the crash left: it must roll back and succeed.
        let other = pick(rng, &candidates(&mid));
        let next = sb.kleene(&other.args().iter().map(String::as_str).collect::<Vec<_>>());
        if next.code != 0 {
            found.push(format!("the next command `kleene {}` failed: {}", other.args().join(" "), next.stderr.trim()));
        }
        inj.follow_up = Some(other);
    } else {
        found.extend(retry(sb, &inj.cmd, was_done));
        if !inj.cmd.done(&read()) {
            found.push("after running it again, its effect is not there".into());
        }
    }
    let after = read();
    run.seen.extend(after.containers.iter().chain(&before.containers).map(|c| c.id.clone()));
    run.tally(inj, &after);
    let current: BTreeSet<&String> = after.containers.iter().map(|c| &c.id).collect();
    let removed = run.seen.iter().filter(|id| !current.contains(id)).cloned();
    found.extend(Checker::new(sb).removed_containers(removed).findings());
    found
}

/// Run `cmd` again: it must succeed, or be refused as already done when its effect is
/// already there.
fn retry(sb: &Sandbox, cmd: &Cmd, was_done: bool) -> Option<String> {
    let again = sb.kleene(&cmd.args().iter().map(String::as_str).collect::<Vec<_>>());
    let err = again.stderr.trim();
    match (was_done, again.code) {
        (false, 0) => None,
        (false, _) => Some(format!("running it again failed: {err}")),
        (true, 0) => Some("running it again succeeded although its effect was already there".into()),
        (true, _) if err != cmd.refusal() => {
            Some(format!("running it again: expected '{}', got '{err}'", cmd.refusal()))
        }
        (true, _) => None,
    }
}

/// What a run did, for its summary.
#[derive(Default)]
struct RunStats {
    durations: Durations,
    /// Every container id ever seen (their leftovers are looked for after removal).
    seen: BTreeSet<String>,
    /// Per command kind: injections, died mid-command, left a journal row.
    by_kind: BTreeMap<String, [usize; 3]>,
    /// Summed over the states checked: running vnet, ipnet, disabled containers; endpoints.
    running: [usize; 4],
}

impl RunStats {
    fn tally(&mut self, inj: &Injection, after: &StateView) {
        let row = self.by_kind.entry(inj.cmd.kind()).or_default();
        row[0] += 1;
        row[1] += usize::from(inj.killed);
        row[2] += usize::from(inj.journal_left);
        for c in after.containers.iter().filter(|c| c.running) {
            match driver_stack(&c.driver) {
                Some(Stack::Private) => self.running[0] += 1,
                Some(Stack::Restricted) => self.running[1] += 1,
                Some(Stack::Disabled) => self.running[2] += 1,
                _ => {}
            }
        }
        self.running[3] += after.endpoints.len();
    }

    fn summary(&self, injections: usize) -> String {
        let n = injections.max(1) as f64;
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, [total, died, journal])| {
                format!("  {k:<18} {total:>4} injections, {died:>4} died mid-command, {journal:>4} left a journal row")
            })
            .collect();
        let [v, i, d, e] = self.running.map(|x| x as f64 / n);
        format!(
            "{}\n  states checked held on average {v:.1} running vnet, {i:.1} ipnet, {d:.1} disabled containers and {e:.1} endpoints",
            kinds.join("\n")
        )
    }
}

/// Remove every container and network, then check that nothing at all is left.
fn teardown(sb: &Sandbox, seen: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for (name, _) in CONTAINERS {
        let run = sb.kleene(&["container", "rm", "-f", name]);
        if run.code != 0 && run.stderr.trim() != "kleene: container not found" {
            found.push(format!("teardown: rm -f {name}: {}", run.stderr.trim()));
        }
    }
    for (name, ..) in NETWORKS {
        let run = sb.kleene(&["network", "rm", name]);
        if run.code != 0 && run.stderr.trim() != "kleene: network not found" {
            found.push(format!("teardown: network rm {name}: {}", run.stderr.trim()));
        }
    }
    found.extend(Checker::new(sb).removed_containers(seen.iter().cloned()).findings());
    found
}

/// Cgroups a failed run could not remove (the hierarchy is the machine's, not the
/// namespace's): empty ones are removed so a failure leaves no trace behind.
fn remove_leftover_cgroups(seen: &BTreeSet<String>) {
    let Some(root) = kernel::cgroup2_mount().map(|m| m.join("kleene")) else { return };
    for id in seen {
        let _ = std::fs::remove_dir(root.join(id));
    }
}

/// A random kill point for a command that typically runs `typical_us`. Three in four are a
/// SIGKILL at a random time up to a little beyond that (some come too late: the command
/// must then simply have happened); two thirds of those fall in the second half, where the
/// host changes are (process start, plugin loading and state reading come first). The rest
/// abort before a random step of the plan.
fn kill_point(rng: &mut Rng, typical_us: u64) -> KillPoint {
    let span = typical_us * 11 / 10;
    match rng.below(12) {
        0..=2 => KillPoint::BeforeStep(rng.below(10)),
        3..=5 => KillPoint::After(Duration::from_micros(rng.below(span))),
        _ => KillPoint::After(Duration::from_micros(typical_us / 2 + rng.below(span - typical_us / 2))),
    }
}

#[test]
fn random_kills_leave_state_and_kernel_consistent() {
    let seed: u64 = env_or("KLEENE_FAULT_SEED", {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        (t.as_nanos() as u64) ^ u64::from(std::process::id())
    })
    .max(1);
    let injections: usize = env_or("KLEENE_FAULT_INJECTIONS", 100);
    let budget = Duration::from_secs(env_or("KLEENE_FAULT_SECONDS", 75));
    let keep_going = std::env::var("KLEENE_FAULT_KEEP_GOING").is_ok_and(|v| v == "1");
    eprintln!("fault injection: seed {seed} (replay: KLEENE_FAULT_SEED={seed})");
    let mut rng = Rng(seed);
    let mut run = RunStats::default();
    let mut sb = Sandbox::new("fault");
    let (start, mut done) = (Instant::now(), 0);
    let mut failures: Vec<String> = Vec::new();
    let mut history: Vec<String> = Vec::new();
    while done < injections && start.elapsed() < budget {
        let view = StateView::read(&sb.dir.path().join("state")).expect("state readable");
        let cmd = pick(&mut rng, &candidates(&view));
        let point = kill_point(&mut rng, run.durations.of(&cmd.kind()));
        let mut inj = Injection { n: done + 1, cmd, point, killed: false, journal_left: false, follow_up: None };
        let found = inject(&sb, &mut inj, &mut rng, &mut run);
        done += 1;
        history.push(inj.to_string());
        if found.is_empty() {
            continue;
        }
        eprintln!("INCONSISTENT after {inj}:\n  {}", found.join("\n  "));
        let recent = history[history.len().saturating_sub(8)..].join("\n      ");
        failures.push(format!(
            "after {inj}\n    {}\n    (commands since the namespace was made, last 8:\n      {recent})",
            found.join("\n    ")
        ));
        if !keep_going {
            break;
        }
        // Carry on in a fresh namespace: this one's state is suspect.
        drop(sb);
        remove_leftover_cgroups(&run.seen);
        sb = Sandbox::new("fault");
        history.clear();
    }
    let leftovers = teardown(&sb, &run.seen);
    drop(sb);
    remove_leftover_cgroups(&run.seen);
    eprintln!(
        "fault injection: seed {seed}: {done} injections in {:.1?}, {} inconsistent\n{}",
        start.elapsed(),
        failures.len(),
        run.summary(done)
    );
    if !leftovers.is_empty() {
        failures.push(format!("after removing everything:\n    {}", leftovers.join("\n    ")));
    }
    assert!(failures.is_empty(), "seed {seed} (replay: KLEENE_FAULT_SEED={seed}):\n{}", failures.join("\n"));
    assert!(done >= injections.min(10), "only {done} injections ran within {budget:?}");
}

/// Every step boundary of every mutating command, deterministically: the engine's abort hook
/// before step 0, 1, 2, ... until the command completes, then after its last step (before the
/// commit). Each time an unrelated command rolls the journal back and the checker looks (the
/// host must be as before the command), then the command runs again and the checker looks
/// again (as after it); then whatever brings the scene back for the next step.
#[test]
fn an_abort_before_any_step_of_any_command_is_recovered() {
    let sb = Sandbox::new("fault-steps");
    let k = |args: &[&str]| sb.kleene(args).ok();
    k(&["network", "create", "-t", "bridge", "--subnet", "10.84.0.0/24", "--subnet6", "fd00:84::/64", "b0"]);
    k(&["network", "create", "-t", "loopback", "--subnet", "10.85.0.0/24", "l0"]);
    k(&["container", "create", "-l", "vnet", "-n", "b0", "v"]);
    k(&["container", "create", "-l", "ipnet", "-n", "b0", "i"]);
    k(&["network", "connect", "l0", "i"]);
    k(&["container", "create", "-l", "disabled", "d"]);
    let b1 = "network create -t bridge --subnet 10.86.0.0/24 --subnet6 fd00:86::/64 b1";
    // (commands that set the scene, the command under test, what brings the scene back to
    // where that command can run again).
    let table: [(&[&str], &str, &[&str]); 11] = [
        (&[], b1, &["network rm b1"]),
        (&[], "container start v", &["container stop v"]),
        (&[], "container start i", &["container stop i"]),
        (&[], "container start d", &["container stop d"]),
        (
            &["container start v", "container start i", "container start d", b1],
            "network connect b1 v",
            &["network disconnect b1 v"],
        ),
        (&[], "network connect b1 i", &["network disconnect b1 i"]),
        (&[], "network disconnect l0 i", &["network connect l0 i"]),
        (&[], "container stop v", &["container start v"]),
        (&[], "container stop i", &["container start i"]),
        (&[], "container stop d", &["container start d"]),
        (
            &["network connect b1 v", "network connect b1 i"],
            "network rm b1",
            &[b1, "network connect b1 v", "network connect b1 i"],
        ),
    ];
    let run = |line: &str| sb.kleene(&line.split(' ').collect::<Vec<_>>());
    let mut failures = Vec::new();
    let mut boundaries = 0;
    for (setup, cmd, back) in table {
        for line in setup {
            let set = run(line);
            let so_far = failures.join("\n");
            assert_eq!(set.code, 0, "setting the scene with `kleene {line}`: {}\nafter:\n{so_far}", set.stderr);
        }
        // Before step 0, 1, 2, ... until the command completes; then once after its last step
        // (every host change made, none committed: the whole plan is rolled back).
        let (mut step, mut after_last) = (0, false);
        loop {
            let (point, at) = if after_last {
                ("firewall".to_string(), "after its last step".to_string())
            } else {
                (step.to_string(), format!("before step {step}"))
            };
            let args: Vec<&str> = cmd.split(' ').collect();
            let aborted = sb.kleene_env(&args, &[("KLEENE_FAULT_INJECT", &format!("abort-at:{point}"))]);
            // Fewer steps than that: the command simply ran, and this command is done.
            let finished = aborted.code == 0;
            if finished && after_last {
                failures.push(format!("`kleene {cmd}` with abort-at:{point} was not aborted"));
            }
            if !finished && aborted.code != -1 {
                failures.push(format!("`kleene {cmd}` with abort-at:{point} was refused: {}", aborted.stderr.trim()));
                break;
            }
            if !finished {
                boundaries += 1;
                // An unrelated command first: it rolls the journal back, and then the host
                // must be exactly as before the command.
                let mut found: Vec<String> = Vec::new();
                if run("container create -l host bystander").code != 0 || run("container rm bystander").code != 0 {
                    found.push("an unrelated command failed after the abort".into());
                }
                found.extend(Checker::new(&sb).findings().into_iter().map(|f| format!("after the rollback: {f}")));
                let again = run(cmd);
                if again.code != 0 {
                    found.push(format!("running it again failed: {}", again.stderr.trim()));
                }
                found.extend(Checker::new(&sb).findings());
                if !found.is_empty() {
                    failures.push(format!("`kleene {cmd}` aborted {at}:\n    {}", found.join("\n    ")));
                }
            }
            for line in back {
                let restore = run(line);
                if restore.code != 0 {
                    failures.push(format!("after {cmd} ({at}), `kleene {line}` failed: {}", restore.stderr.trim()));
                }
            }
            if after_last {
                break;
            }
            if finished {
                after_last = true;
            } else {
                step += 1;
            }
        }
    }
    assert!(boundaries >= 30, "only {boundaries} step boundaries were exercised");
    assert!(
        failures.is_empty(),
        "{} of {boundaries} step boundaries left inconsistencies:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The interface group kleene creates its host links in (`KLEENE_GROUP` in the Linux
/// executor), as `ip` prints it.
const KLEENE_GROUP: &str = "1263291973";

/// A kill right after kleene created a link (before state records it) must not wedge
/// recovery: the link is in kleene's interface group from the request that created it, so the
/// next command rolls it back. (The mark used to be a description set by a second request;
/// a kill between the two left a journal row every later command refused.) A link outside
/// the group is still refused.
#[test]
fn a_link_kleene_created_is_rolled_back_before_state_records_it() {
    let sb = Sandbox::new("fault-group");
    let k = |args: &[&str]| sb.kleene(args).ok();
    k(&["network", "create", "-t", "bridge", "--subnet", "10.89.0.0/24", "b"]);
    k(&["container", "create", "-l", "vnet", "-n", "b", "v"]);
    k(&["container", "start", "v"]);
    let group_of = |name: &str| sb.ip_json(&format!("-d link show {name}"))[0]["group"].clone();
    let host_end = sb.links().into_iter().find(|l| l.starts_with("kv")).expect("a vnet host end");
    for link in ["kleene0", host_end.as_str()] {
        assert_eq!(group_of(link), KLEENE_GROUP, "{link} is in kleene's group");
    }

    // What a kill right after `network create` made its bridge leaves: the bridge, in the
    // group, and the journal row of the plan (per step, the first started).
    sb.sh(&format!("ip link add kleene9 group {KLEENE_GROUP} type bridge")).ok();
    let db = rusqlite::Connection::open(sb.dir.path().join("state/kleene.db")).unwrap();
    let undo = serde_json::json!([
        [{"op": "delete_link", "name": "kleene9", "kind": "bridge"}],
        [{"op": "remove_address", "link": "kleene9", "address": "10.90.0.1", "prefix": 24, "sandbox": null}],
        [{"op": "set_link_down", "name": "kleene9", "sandbox": null}]
    ]);
    let plant = "INSERT INTO journal (what, undo, progress) VALUES ('network create x', ?1, 1)";
    db.execute(plant, [undo.to_string()]).unwrap();
    k(&["container", "stop", "v"]);
    assert!(!sb.links().contains(&"kleene9".to_string()), "the interrupted create was rolled back");
    Checker::new(&sb).assert_consistent();

    // The same row naming a link outside the group is refused, and the link survives.
    sb.sh("ip link add kleene9 type bridge").ok();
    db.execute(plant, [undo.to_string()]).unwrap();
    let err = sb.kleene(&["container", "start", "v"]).err();
    assert!(err.contains("it names host interface kleene9, which kleene neither records nor created"), "{err}");
    assert!(sb.links().contains(&"kleene9".to_string()), "a link not kleene's is left alone");
    db.execute("DELETE FROM journal", []).unwrap();
    sb.sh("ip link del kleene9").ok();
}

/// A rolled-back `container stop` of an ipnet container must never leave it running in an
/// unrestricted cgroup: at every step boundary, after the last step (the sandbox destroyed,
/// nothing committed; by a crash and by a failure), the container is still running and, from
/// its cgroup, binds its own addresses and no other address of the host.
#[test]
fn a_rolled_back_ipnet_stop_never_leaves_the_container_unrestricted() {
    let sb = Sandbox::new("fault-ipnet");
    let k = |args: &[&str]| sb.kleene(args).ok();
    k(&["network", "create", "-t", "bridge", "--subnet", "10.91.0.0/24", "--subnet6", "fd00:91::/64", "b"]);
    k(&["network", "create", "-t", "loopback", "--subnet", "10.92.0.0/24", "l"]);
    k(&["container", "create", "-l", "ipnet", "-n", "b", "i"]);
    k(&["network", "connect", "l", "i"]);
    k(&["container", "start", "i"]);
    let inspect = sb.kleene(&["container", "inspect", "i"]).json();
    let id = inspect["container"]["id"].as_str().unwrap().to_string();
    let own: Vec<std::net::IpAddr> = inspect["container_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| [&e["ip_address"], &e["ip_address6"]])
        .filter_map(|a| a.as_str().filter(|a| !a.is_empty())?.parse().ok())
        .collect();
    assert_eq!(own.len(), 3, "{inspect}");
    // The bridge's gateways: host addresses the container must never bind.
    let foreign: Vec<std::net::IpAddr> = vec!["10.91.0.1".parse().unwrap(), "fd00:91::1".parse().unwrap()];
    let cgroup = kernel::cgroup2_mount().unwrap().join("kleene").join(&id);
    // Steps: one alias removal per address, then the sandbox's destruction.
    let points =
        ["abort-at:0", "abort-at:1", "abort-at:2", "abort-at:3", "abort-at:firewall", "fail-at:3", "fail-at:firewall"];
    for point in points {
        let stop = sb.kleene_env(&["container", "stop", "i"], &[("KLEENE_FAULT_INJECT", point)]);
        assert_ne!(stop.code, 0, "{point}: the stop was interrupted");
        // Any command that changes the host rolls an interrupted one back first.
        k(&["container", "create", "-l", "host", "bystander"]);
        k(&["container", "rm", "bystander"]);
        let running = sb.kleene(&["container", "inspect", "i"]).json()["container"]["running"].clone();
        assert_eq!(running, true, "{point}: still running");
        let addrs: Vec<std::net::IpAddr> = own.iter().chain(&foreign).copied().collect();
        let bound = kernel::bind_probe(&sb.netns_path(), &cgroup, &addrs).unwrap_or_else(|e| panic!("{point}: {e}"));
        for (ip, ok) in addrs.iter().zip(bound) {
            assert_eq!(ok, own.contains(ip), "{point}: binding {ip} from the container's cgroup");
        }
        Checker::new(&sb).assert_consistent();
    }
    k(&["container", "stop", "i"]);
    assert!(!cgroup.exists(), "a stop that runs to the end removes the cgroup");
}
