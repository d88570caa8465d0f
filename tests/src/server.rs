//! `kleene serve` inside a test's namespace, on a socket in the sandbox dir, and the two
//! clients the API tests use: Kleene's own `klee`, and raw HTTP/1.1 over the unix socket
//! (for what klee never sends: bad bodies, stalls, hang-ups).

use crate::{Run, Sandbox};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kleene's client, installed by scripts/install-deps.sh (or where `KLEENE_KLEE` says).
pub fn klee_bin() -> PathBuf {
    let bin = std::env::var("KLEENE_KLEE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| "/opt/kleene-test/klee-venv/bin/klee".into());
    assert!(bin.exists(), "{} is missing: run scripts/install-deps.sh (or set KLEENE_KLEE)", bin.display());
    bin
}

/// A running `kleene serve`; SIGTERM on drop, and the socket file must be gone after.
pub struct Server<'a> {
    pub sb: &'a Sandbox,
    pub socket: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Sandbox {
    /// Start `kleene serve` in this namespace and wait until it answers.
    pub fn serve(&self) -> Server<'_> {
        self.serve_with(&["--no-docker"])
    }

    /// [`Sandbox::serve`] with more arguments for `kleene serve`.
    pub fn serve_with(&self, extra: &[&str]) -> Server<'_> {
        let socket = self.dir.path().join("kleened.sock");
        let log = self.dir.path().join("serve.log");
        let mut args = vec!["serve".to_string(), "--socket".into(), socket.display().to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = self
            .kleene_command(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("server log"))
            .spawn()
            .expect("spawn kleene serve");
        let mut server = Server { sb: self, socket, log, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = server.child.try_wait().expect("wait server") {
                panic!("kleene serve exited ({status}): {}", server.log_text());
            }
            if UnixStream::connect(&server.socket).is_ok() && server.request("GET", "/networks/list", "").0 == 200 {
                return server;
            }
            assert!(Instant::now() < deadline, "kleene serve did not answer: {}", server.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Server<'_> {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("http://{}", self.socket.display())
    }

    /// `klee --host http:///SOCKET ARGS` (plain tables, no colours).
    pub fn klee(&self, args: &[&str]) -> Run {
        let out = Command::new(klee_bin())
            .args(["--theme", "simple", "--host", &self.host()])
            .args(args)
            .env("COLUMNS", "200")
            .env("NO_COLOR", "1")
            .output()
            .expect("run klee");
        Run::from_output(out)
    }

    /// One HTTP/1.1 request on a fresh connection: (status, body).
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: kleened\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body.as_bytes());
        self.raw(&raw)
    }

    /// Send `raw` bytes as they are and read the answer to the end: (status, body).
    pub fn raw(&self, raw: &[u8]) -> (u16, String) {
        let mut s = UnixStream::connect(&self.socket).expect("connect to kleene serve");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        // A server may answer (413) and close before reading all of a large body.
        let _ = s.write_all(raw);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        parse_answer(&String::from_utf8_lossy(&answer))
    }

    /// A JSON request that must succeed with `status`: the parsed body (Null when empty).
    #[track_caller]
    pub fn json(&self, method: &str, path: &str, body: &str, status: u16) -> Value {
        let (code, text) = self.request(method, path, body);
        assert_eq!(code, status, "{method} {path} {body}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// Status and body of an HTTP/1.1 answer (content-length or chunked).
pub fn parse_answer(answer: &str) -> (u16, String) {
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let Some((head, body)) = answer.split_once("\r\n\r\n") else { return (status, String::new()) };
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, body.to_string());
    }
    let (mut out, mut rest) = (String::new(), body);
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    (status, out)
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid (nsenter execs kleene without forking).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        if std::thread::panicking() {
            return;
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "kleene serve did not exit 0 on SIGTERM ({status:?}): {}",
            self.log_text()
        );
        assert!(!self.socket.exists(), "kleene serve left its socket {} behind", self.socket.display());
    }
}
