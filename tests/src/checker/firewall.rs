//! The firewall: the `inet kleene` table in the kernel must be exactly what a full reload of
//! the current state gives. The reference is kleene's own rendering of the state
//! (`--dry-run system reconcile`), loaded into a throwaway namespace and listed back, so
//! both sides go through the same nft parser and the comparison is of kernel objects.

use super::Scene;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

pub fn check(scene: &Scene, out: &mut Vec<String>) {
    let script = match rendered_script(scene) {
        Ok(s) => s,
        Err(e) => return out.push(format!("firewall: {e}")),
    };
    let reference = match load_elsewhere(&script) {
        Ok(v) => normalize(&v),
        Err(e) => return out.push(format!("firewall: the full reload itself fails: {e}")),
    };
    let listed = scene.sandbox.sh("nft -j list table inet kleene");
    if listed.code != 0 {
        if !scene.view.networks.is_empty() || !scene.view.containers.is_empty() {
            out.push(format!("firewall: table inet kleene is missing ({})", listed.stderr.trim()));
        }
        return;
    }
    let actual = match serde_json::from_str(&listed.stdout) {
        Ok(v) => normalize(&v),
        Err(e) => return out.push(format!("firewall: nft -j gave bad JSON: {e}")),
    };
    let before = out.len();
    for item in actual.iter().filter(|i| !reference.contains(i)) {
        out.push(format!("firewall: the kernel has {}, a full reload would not", short(item)));
    }
    for item in reference.iter().filter(|i| !actual.contains(i)) {
        out.push(format!("firewall: a full reload would have {}, the kernel has not", short(item)));
    }
    if actual != reference && out.len() == before {
        out.push("firewall: the kernel's objects are in another order than a full reload's".into());
    }
    // kleene updates the table by difference from its record of the last load: a record
    // that is not what the kernel holds would make the next update wrong.
    if let Ok(record) = std::fs::read_to_string(scene.run_dir.join("firewall.nft")) {
        if record != script {
            out.push(
                "firewall: the record of the applied table (run dir firewall.nft) differs from the state's".into(),
            );
        }
    }
}

/// The nft script kleene renders for the current state.
fn rendered_script(scene: &Scene) -> Result<String, String> {
    let run = scene.sandbox.kleene(&["--dry-run", "system", "reconcile"]);
    if run.code != 0 {
        return Err(format!("kleene --dry-run system reconcile failed: {}", run.stderr.trim()));
    }
    let mut lines = run.stdout.lines().skip_while(|l| *l != "nft -f - <<'EOF'").skip(1);
    let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "EOF").collect();
    if body.is_empty() {
        return Err("no nft script in the dry run's output".into());
    }
    Ok(body.iter().map(|l| format!("{l}\n")).collect())
}

/// Load `script` into a fresh network namespace and list the table back.
fn load_elsewhere(script: &str) -> Result<Value, String> {
    let mut child = Command::new("unshare")
        .args(["--net", "sh", "-c", "nft -f - && nft -j list table inet kleene"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let _ = child.stdin.take().expect("piped").write_all(script.as_bytes());
    let done = child.wait_with_output().map_err(|e| e.to_string())?;
    if !done.status.success() {
        return Err(String::from_utf8_lossy(&done.stderr).trim().to_string());
    }
    serde_json::from_slice(&done.stdout).map_err(|e| format!("bad JSON: {e}"))
}

/// The table's objects without what differs between two loads of the same script: kernel
/// handles, and the order of set elements (hash sets list in a per-set random order).
fn normalize(doc: &Value) -> Vec<Value> {
    fn scrub(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("handle");
                map.values_mut().for_each(scrub);
                if let Some(Value::Array(elems)) = map.get_mut("elem") {
                    elems.sort_by_key(|e| e.to_string());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o.get("metainfo").is_none())
        .map(|o| {
            let mut o = o.clone();
            scrub(&mut o);
            o
        })
        .collect()
}

/// An object in one line, cut to a readable length.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 {
        format!("{}...", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}
