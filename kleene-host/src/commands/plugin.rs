//! `kleene plugin ls|inspect`.

use super::output::print_table;
use super::Ctx;
use crate::loader::load_file;
use anyhow::{bail, Result};
use serde_json::{json, Value};

/// One row per file on the search path: loaded, broken (with the reason) or shadowed.
fn rows(ctx: &mut Ctx) -> Vec<Value> {
    let candidates = ctx.registry().candidates.clone();
    candidates
        .iter()
        .map(|c| {
            let base = json!({"name": c.name, "path": c.path.display().to_string()});
            let mut row = base.as_object().cloned().unwrap_or_default();
            if let Some(winner) = &c.shadowed_by {
                row.insert("status".into(), json!("shadowed"));
                row.insert("reason".into(), json!(format!("shadowed by {}", winner.display())));
                return Value::Object(row);
            }
            match load_file(&c.path) {
                Ok(p) => {
                    row.insert("status".into(), json!("ok"));
                    row.insert("kind".into(), json!(p.info.kind.as_str()));
                    row.insert("version".into(), json!(p.info.version));
                    row.insert("api".into(), json!(p.info.api_version));
                    row.insert("description".into(), json!(p.info.description));
                    row.insert("network_types".into(), json!(p.info.network_types));
                }
                Err(e) => {
                    row.insert("status".into(), json!("broken"));
                    row.insert("reason".into(), json!(format!("{e:#}")));
                }
            }
            Value::Object(row)
        })
        .collect()
}

pub fn ls(ctx: &mut Ctx, as_json: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let rows = rows(ctx);
    // Diagnostics for bench/plugins.sh: discovery + load + checks of every file, in-process.
    if std::env::var_os("KLEENE_TIMING").is_some() {
        let ok = rows.iter().filter(|r| r["status"] == "ok").count();
        eprintln!(
            "plugin ls: {} files, {ok} loaded and checked in {:.3} ms",
            rows.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let field = |r: &Value, k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let table = rows.iter().map(|r| {
        let status = match field(r, "status").as_str() {
            "ok" => "ok".to_string(),
            _ => format!("{}: {}", field(r, "status"), field(r, "reason")),
        };
        vec![field(r, "name"), field(r, "kind"), field(r, "version"), field(r, "api"), field(r, "path"), status]
    });
    print_table(&["NAME", "KIND", "VERSION", "API", "PATH", "STATUS"], table);
    Ok(())
}

pub fn inspect(ctx: &mut Ctx, name: &str, as_json: bool) -> Result<()> {
    let Some(c) = ctx.registry().find(name).cloned() else {
        bail!("no plugin named '{name}' on the plugin path (see kleene plugin ls)");
    };
    let p = load_file(&c.path)?;
    let doc = json!({
        "name": p.info.name, "kind": p.info.kind.as_str(), "version": p.info.version,
        "api_version": p.info.api_version, "description": p.info.description,
        "network_types": p.info.network_types, "path": p.path.display().to_string(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for (k, v) in doc.as_object().into_iter().flatten() {
            println!("{k}: {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    Ok(())
}
