//! A small client of etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`,
//! `/v3/watch`): JSON over HTTP/1.1 through hyper, which kleene already links for its API
//! server. Keys and values travel base64-encoded; 64-bit numbers as strings.
//!
//! Each call is one HTTP request on a kept connection (one round trip); the client counts
//! them, so the benchmark can report round trips per operation.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long one request may take before etcd counts as unreachable.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Round trips made by this process (for `KLEENE_CLUSTER_STATS`).
pub static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// One key as etcd returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A comparison of a transaction.
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Present(String),
    /// No key with this prefix exists.
    NoneWithPrefix(String),
    /// The key's value is exactly this.
    ValueIs(String, Vec<u8>),
}

/// An operation of a transaction.
pub enum TxnOp {
    Put { key: String, value: Vec<u8>, lease: i64 },
    Delete(String),
    DeletePrefix(String),
    RangePrefix(String),
}

/// The outcome of a transaction: whether the comparisons held, and the ranges read by the
/// branch that ran.
pub struct TxnResult {
    pub succeeded: bool,
    pub ranges: Vec<Vec<Kv>>,
}

pub struct Etcd {
    endpoints: Vec<String>,
    runtime: tokio::runtime::Runtime,
    conn: Option<(usize, SendRequest<Full<Bytes>>)>,
}

fn b64(s: impl AsRef<[u8]>) -> String {
    B64.encode(s)
}

/// The end of the range holding every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return b64(end);
        }
    }
    b64([0u8])
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kvs(range: &Value) -> Result<Vec<Kv>> {
    let Some(list) = range.get("kvs").and_then(Value::as_array) else { return Ok(Vec::new()) };
    list.iter()
        .map(|kv| {
            let text = |f: &str| B64.decode(kv.get(f).and_then(Value::as_str).unwrap_or_default());
            Ok(Kv {
                key: String::from_utf8(text("key")?)?,
                value: text("value")?,
                mod_revision: int(&kv["mod_revision"]),
                lease: int(&kv["lease"]),
            })
        })
        .collect()
}

fn compare_json(c: &Compare) -> Value {
    match c {
        Compare::Absent(k) => json!({"key": b64(k), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}),
        Compare::Present(k) => json!({"key": b64(k), "target": "CREATE", "result": "GREATER", "create_revision": "0"}),
        // Over a range, every key must satisfy the comparison; none at all compares as one
        // key that was never created.
        Compare::NoneWithPrefix(p) => json!({
            "key": b64(p), "range_end": prefix_end(p), "target": "CREATE", "result": "EQUAL", "create_revision": "0"
        }),
        Compare::ValueIs(k, v) => json!({"key": b64(k), "target": "VALUE", "result": "EQUAL", "value": b64(v)}),
    }
}

fn op_json(op: &TxnOp) -> Value {
    match op {
        TxnOp::Put { key, value, lease } => {
            json!({"request_put": {"key": b64(key), "value": b64(value), "lease": lease.to_string()}})
        }
        TxnOp::Delete(k) => json!({"request_delete_range": {"key": b64(k)}}),
        TxnOp::DeletePrefix(p) => json!({"request_delete_range": {"key": b64(p), "range_end": prefix_end(p)}}),
        TxnOp::RangePrefix(p) => json!({"request_range": {"key": b64(p), "range_end": prefix_end(p)}}),
    }
}

impl Etcd {
    /// A client of the first reachable of `endpoints` (`http://host:port`).
    pub fn new(endpoints: Vec<String>) -> Result<Etcd> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Etcd { endpoints, runtime, conn: None })
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    fn authority(endpoint: &str) -> &str {
        endpoint.trim_start_matches("http://").trim_end_matches('/')
    }

    async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn request(authority: &str, path: &str, body: &Value) -> Result<hyper::Request<Full<Bytes>>> {
        Ok(hyper::Request::post(path)
            .header("host", authority)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?)
    }

    /// POST `body` to `path`; the JSON reply. The endpoint that answered last is asked
    /// first; each other one once.
    pub fn call(&mut self, path: &str, body: Value) -> Result<Value> {
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        let count = self.endpoints.len();
        let first = self.conn.as_ref().map_or(0, |(i, _)| *i);
        let mut last = anyhow!("no etcd endpoint configured");
        // A kept connection the server closed meanwhile is retried once on a new one.
        let kept_first = self.conn.as_ref().map(|(i, _)| *i);
        let attempts = kept_first.into_iter().chain((0..count).map(|n| (first + n) % count));
        for index in attempts {
            let authority = Self::authority(&self.endpoints[index]).to_string();
            let kept = self.conn.take().filter(|(i, s)| *i == index && !s.is_closed()).map(|(_, s)| s);
            let exchange = async {
                let mut sender = match kept {
                    Some(s) => s,
                    None => Self::connect(&authority).await?,
                };
                sender.ready().await?;
                let reply = sender.send_request(Self::request(&authority, path, &body)?).await?;
                let status = reply.status();
                let bytes = reply.into_body().collect().await?.to_bytes();
                anyhow::Ok((sender, status, bytes))
            };
            // The timer belongs to the runtime: made inside it.
            let result = self.runtime.block_on(async { tokio::time::timeout(TIMEOUT, exchange).await });
            match result {
                Ok(Ok((sender, status, bytes))) => {
                    self.conn = Some((index, sender));
                    let value: Value = serde_json::from_slice(&bytes).context("etcd sent no JSON")?;
                    if !status.is_success() {
                        let message = value.get("message").or(value.get("error")).and_then(Value::as_str);
                        bail!("etcd refused {path}: {}", message.unwrap_or(status.as_str()));
                    }
                    return Ok(value);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = anyhow!("no answer within {}s", TIMEOUT.as_secs()),
            }
        }
        Err(anyhow!("etcd at {} is unreachable ({last:#})", self.endpoints()))
    }

    /// Every key under `prefix`, and the store's revision at that moment.
    pub fn range_prefix(&mut self, prefix: &str) -> Result<(Vec<Kv>, i64)> {
        let reply = self.call("/v3/kv/range", json!({"key": b64(prefix), "range_end": prefix_end(prefix)}))?;
        Ok((kvs(&reply)?, int(&reply["header"]["revision"])))
    }

    pub fn txn(&mut self, compare: &[Compare], success: &[TxnOp], failure: &[TxnOp]) -> Result<TxnResult> {
        let body = json!({
            "compare": compare.iter().map(compare_json).collect::<Vec<_>>(),
            "success": success.iter().map(op_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
        });
        let reply = self.call("/v3/kv/txn", body)?;
        let ranges = reply["responses"]
            .as_array()
            .map(|r| r.iter().filter_map(|r| r.get("response_range")).map(kvs).collect::<Result<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        // proto3 JSON leaves `false` out.
        Ok(TxnResult { succeeded: reply["succeeded"].as_bool().unwrap_or(false), ranges })
    }

    pub fn put(&mut self, key: &str, value: &[u8], lease: i64) -> Result<()> {
        self.call("/v3/kv/put", json!({"key": b64(key), "value": b64(value), "lease": lease.to_string()}))?;
        Ok(())
    }

    /// A lease of `ttl` seconds; its id.
    pub fn grant(&mut self, ttl: u64) -> Result<i64> {
        let reply = self.call("/v3/lease/grant", json!({"TTL": ttl.to_string()}))?;
        match int(&reply["ID"]) {
            0 => bail!("etcd granted no lease: {reply}"),
            id => Ok(id),
        }
    }

    /// Renew a lease; false when it has expired already.
    pub fn keepalive(&mut self, lease: i64) -> Result<bool> {
        let reply = self.call("/v3/lease/keepalive", json!({"ID": lease.to_string()}))?;
        Ok(int(&reply["result"]["TTL"]) > 0)
    }

    /// Wait for a change under `prefix` after `revision`: returns when one arrives (true), or
    /// after `wait` without one (false). One long request of its own connection.
    pub fn wait_for_change(&mut self, prefix: &str, revision: i64, wait: Duration) -> Result<bool> {
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        let endpoint = self.endpoints.first().cloned().ok_or_else(|| anyhow!("no etcd endpoint configured"))?;
        let authority = Self::authority(&endpoint).to_string();
        let body = json!({"create_request": {
            "key": b64(prefix), "range_end": prefix_end(prefix), "start_revision": (revision + 1).to_string()
        }});
        self.runtime.block_on(async {
            let mut sender = Self::connect(&authority).await?;
            let reply = sender.send_request(Self::request(&authority, "/v3/watch", &body)?).await?;
            let mut body = reply.into_body();
            let deadline = tokio::time::Instant::now() + wait;
            // The stream is one JSON object per chunk: first the watch's creation, then events.
            loop {
                match tokio::time::timeout_at(deadline, body.frame()).await {
                    Err(_) => return Ok(false),
                    Ok(None) => bail!("etcd ended the watch"),
                    Ok(Some(frame)) => {
                        let Ok(data) = frame?.into_data() else { continue };
                        let text = String::from_utf8_lossy(&data);
                        if text.contains("\"events\"") {
                            return Ok(true);
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(B64.decode(prefix_end("/kleene/")).unwrap(), b"/kleene0");
        assert_eq!(B64.decode(prefix_end("a\u{7f}")).unwrap(), b"a\x80");
    }

    #[test]
    fn an_empty_prefix_compares_as_a_key_never_created() {
        // etcd compares every key of a range; none at all compares as create_revision 0.
        let c = compare_json(&Compare::NoneWithPrefix("/kleene/v1/ips/n1/".into()));
        assert_eq!(c["target"], "CREATE");
        assert_eq!(c["result"], "EQUAL");
        assert_eq!(c["create_revision"], "0");
        assert_eq!(B64.decode(c["range_end"].as_str().unwrap()).unwrap(), b"/kleene/v1/ips/n10");
        let put = op_json(&TxnOp::Put { key: "k".into(), value: b"v".to_vec(), lease: 42 });
        assert_eq!(put["request_put"]["lease"], "42", "64-bit numbers travel as strings");
    }

    #[test]
    fn replies_decode_with_string_numbers() {
        let reply = json!({"kvs": [{"key": b64("k"), "value": b64("v"), "mod_revision": "7", "lease": "42"}]});
        let got = kvs(&reply).unwrap();
        assert_eq!(got, vec![Kv { key: "k".into(), value: b"v".to_vec(), mod_revision: 7, lease: 42 }]);
        assert!(kvs(&json!({})).unwrap().is_empty());
    }
}
