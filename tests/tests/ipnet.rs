//! The ipnet driver's confinement, probed as an attacker would: implicit binds, ping
//! sockets, loopback, and the source of a UDP socket connected after sending. Each test has
//! its own namespace; "host side" means that namespace outside the container's cgroup.

use kleene_tests::{Run, Sandbox};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// An ipnet container `i` on a bridge 10.<n>.0.0/24 + fd00:<n>::/64: it gets .2 / ::2, the
/// host keeps the gateway .1 / ::1.
fn ipnet_container(tag: &str, n: u8) -> Sandbox {
    let sb = Sandbox::new(tag);
    let (v4, v6) = (format!("10.{n}.0.0/24"), format!("fd00:{n}::/64"));
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", &v4, "--subnet6", &v6, "br"]).ok();
    sb.kleene(&["container", "create", "-l", "ipnet", "-n", "br", "i"]).ok();
    sb.kleene(&["container", "start", "i"]).ok();
    sb
}

/// Python inside the container, to completion.
fn in_container(sb: &Sandbox, code: &str, args: &[&str]) -> Run {
    let mut argv = vec!["container", "exec", "i", "--", "python3", "-c", code];
    argv.extend(args);
    sb.kleene(&argv)
}

/// Python inside the container, in the background, stdout piped.
fn spawn_in_container(sb: &Sandbox, code: &str) -> Child {
    sb.kleene_command(&["container", "exec", "i", "--", "python3", "-c", code])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn in container")
}

/// Python on the host side of the test's namespace.
fn host_command(sb: &Sandbox, code: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", sb.netns_path().display())).args(["--", "python3", "-c", code]).args(args);
    cmd
}

fn on_host(sb: &Sandbox, code: &str, args: &[&str]) -> String {
    let out = host_command(sb, code, args).output().expect("run python on the host side");
    assert!(out.status.success(), "host side failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The rest of a background child's output, as sorted lines.
fn finish(child: Child) -> Vec<String> {
    let out = child.wait_with_output().expect("wait");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    lines
}

/// Listen on an unbound TCP socket (dual-stack) and auto-bind a UDP socket by a send; print
/// both ports, then report what reached them until a datagram "end" arrives.
const IMPLICIT_BINDS: &str = r#"
import socket, select
t = socket.socket(socket.AF_INET6)
t.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b'x', ('10.31.0.1', 9))
print(t.getsockname()[1], u.getsockname()[1], flush=True)
while True:
    ready, _, _ = select.select([t, u], [], [], 20)
    if not ready:
        break
    if t in ready:
        c, _ = t.accept()
        print('tcp', c.getsockname()[0])
        c.close()
    if u in ready:
        d, _ = u.recvfrom(100)
        if d == b'end':
            break
        print('udp', d.decode())
"#;

/// Connect to each address at the TCP port, then send each address's name to it at the UDP
/// port, then "end" to the container's own address.
const KNOCK: &str = r#"
import socket, sys, errno
tcp, udp = int(sys.argv[1]), int(sys.argv[2])
for a in ['127.0.0.1', '::1', '10.31.0.1', 'fd00:31::1', '10.31.0.2', 'fd00:31::2']:
    try:
        socket.create_connection((a, tcp), timeout=1).close()
        print(a, 'connected')
    except TimeoutError:
        print(a, 'timeout')
    except OSError as e:
        print(a, errno.errorcode.get(e.errno, str(e)))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for a in ['127.0.0.1', '10.31.0.1', '10.31.0.2']:
    s.sendto(a.encode(), (a, udp))
s.sendto(b'end', ('10.31.0.2', udp))
"#;

/// Issue 8 item 2: listen() on an unbound socket and UDP auto-bind take the wildcard without
/// a bind hook; the packet guard lets only traffic to the container's addresses reach them.
#[test]
fn implicit_binds_hear_only_the_containers_addresses() {
    let sb = ipnet_container("ipnet-implicit", 31);
    let mut child = spawn_in_container(&sb, IMPLICIT_BINDS);
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    let ports: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(ports.len(), 2, "container printed {first:?}");
    let knocks = on_host(&sb, KNOCK, &ports);
    assert_eq!(
        knocks.lines().collect::<Vec<_>>(),
        vec![
            "127.0.0.1 timeout",
            "::1 timeout",
            "10.31.0.1 timeout",
            "fd00:31::1 timeout",
            "10.31.0.2 connected",
            "fd00:31::2 connected"
        ],
        "from the host side, only the container's own addresses reach its unbound listener"
    );
    assert_eq!(
        finish(child),
        vec!["tcp ::ffff:10.31.0.2", "tcp fd00:31::2", "udp 10.31.0.2"],
        "the container heard only its own addresses"
    );
}

const OPEN_PING_SOCKETS: &str = r#"
import socket, errno
for fam, proto in [(socket.AF_INET, socket.IPPROTO_ICMP), (socket.AF_INET6, socket.IPPROTO_ICMPV6)]:
    try:
        socket.socket(fam, socket.SOCK_DGRAM, proto).close()
        print('open')
    except OSError as e:
        print(errno.errorcode[e.errno])
"#;

/// Issue 8 item 3: ping sockets are refused like raw sockets, even where ping_group_range
/// lets every group open them.
#[test]
fn ping_sockets_are_refused() {
    let sb = ipnet_container("ipnet-ping", 32);
    sb.sh("sysctl -qw net.ipv4.ping_group_range='0 2147483647'").ok();
    assert_eq!(on_host(&sb, OPEN_PING_SOCKETS, &[]), "open\nopen", "the host side may open ping sockets");
    assert_eq!(in_container(&sb, OPEN_PING_SOCKETS, &[]).ok(), "EPERM\nEPERM");
    let ping = sb.kleene(&["container", "exec", "i", "--", "ping", "-c1", "-W1", "10.32.0.1"]);
    assert_ne!(ping.code, 0, "ping from the container reached the host: {}", ping.stdout);
    assert_eq!(sb.sh("ping -c1 -W1 10.32.0.1").code, 0, "the host side pings");
}

/// Servers on the container's own addresses, then clients of loopback addresses.
const LOOPBACK: &str = r#"
import socket, threading, errno
def serve(fam, addr, port):
    s = socket.socket(fam)
    s.bind((addr, port))
    s.listen()
    def run():
        while True:
            c, _ = s.accept()
            c.sendall(b'hi')
            c.close()
    threading.Thread(target=run, daemon=True).start()
def client(addr, port):
    try:
        return socket.create_connection((addr, port), timeout=2).recv(2).decode()
    except TimeoutError:
        return 'timeout'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
serve(socket.AF_INET, '10.33.0.2', 7050)
serve(socket.AF_INET6, 'fd00:33::2', 7051)
for addr, port in [('127.0.0.1', 7050), ('127.0.0.2', 7050), ('::1', 7051), ('::ffff:127.0.0.1', 7050), ('127.0.0.1', 7053), ('::1', 7054)]:
    print(addr, port, client(addr, port))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('10.33.0.2', 7052))
u.settimeout(2)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'udp', ('127.0.0.1', 7052))
d, a = u.recvfrom(10)
print(d.decode(), 'from', a[0])
"#;

/// A host-side listener that prints what reached it within a few seconds.
const HOST_LISTENER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
s.settimeout(6)
print('listening', flush=True)
try:
    c, a = s.accept()
    print('reached by', a[0])
except TimeoutError:
    pass
"#;

/// Issue 8 item 4: 127.0.0.0/8 and ::1 are the container's own first address of the family;
/// the host's loopback services are never reached.
#[test]
fn loopback_is_the_containers_own_address() {
    let sb = ipnet_container("ipnet-loopback", 33);
    let mut host_listeners = Vec::new();
    for (addr, port) in [("127.0.0.1", "7053"), ("::1", "7054")] {
        let mut child = host_command(&sb, HOST_LISTENER, &[addr, port]).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        host_listeners.push(child);
    }
    let out = in_container(&sb, LOOPBACK, &[]).ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "127.0.0.1 7050 hi",
            "127.0.0.2 7050 hi",
            "::1 7051 hi",
            "::ffff:127.0.0.1 7050 hi",
            "127.0.0.1 7053 ECONNREFUSED",
            "::1 7054 ECONNREFUSED",
            "udp from 10.33.0.2",
        ],
        "loopback reaches the container's own servers, never the host's"
    );
    for child in host_listeners {
        assert_eq!(finish(child), Vec::<String>::new(), "a host loopback listener was reached");
    }
}

/// A host-side UDP receiver on the gateway: prints each datagram and its source until "end".
const RECEIVER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('10.34.0.1', 7060))
s.settimeout(10)
print('ready', flush=True)
while True:
    d, a = s.recvfrom(100)
    print(d.decode(), a[0])
    if d == b'end':
        break
"#;

/// Send, then connect the same socket; then ask for the gateway's source on a connected
/// socket with IP_PKTINFO.
const SEND_THEN_CONNECT: &str = r#"
import socket, errno, struct
def attempt(f):
    try:
        f()
        return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
gw = ('10.34.0.1', 7060)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b'first', gw)
print('connect', attempt(lambda: s.connect(gw)))
print('send', attempt(lambda: s.send(b'connected')))
print('sendto', attempt(lambda: s.sendto(b'again', gw)))
p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
p.connect(gw)
info = struct.pack('i4s4s', 0, socket.inet_aton(gw[0]), bytes(4))
print('pktinfo', attempt(lambda: p.sendmsg([b'pktinfo'], [(socket.IPPROTO_IP, 8, info)])))
p.send(b'end')
"#;

/// Issue 8 item 6: a UDP socket that sent, then connected, never sends from a host address
/// (the connect is refused: no hook can rebind it); nor does a connected one that asks for
/// a host source with IP_PKTINFO. Checked at the receiver.
#[test]
fn udp_never_leaves_from_a_host_address() {
    let sb = ipnet_container("ipnet-udp-src", 34);
    let mut receiver = host_command(&sb, RECEIVER, &[]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(receiver.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let out = in_container(&sb, SEND_THEN_CONNECT, &[]).ok();
    let seen = finish(receiver);
    assert_eq!(seen, vec!["again 10.34.0.2", "end 10.34.0.2", "first 10.34.0.2"], "sources at the receiver");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["connect EADDRNOTAVAIL", "send EDESTADDRREQ", "sendto ok", "pktinfo EADDRNOTAVAIL"],
        "what the program sees"
    );
}
