//! Allocation cost from the 1st to the 60 000th address of a /16, each allocation in its own
//! committed transaction, as `kleene container create -n` does. Used by bench/networks.sh.
//! Prints the median and 90th percentile of each window of 1000 allocations.

use kleene::state::{ipam, State};
use std::time::Instant;

const WINDOW: usize = 1000;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/tmp/kleene-ipam-bench".into());
    let _ = std::fs::remove_dir_all(&dir);
    let mut state = State::open(std::path::Path::new(&dir))?;
    let subnet: kleene_plugin_api::Cidr = "10.0.0.0/16".parse().map_err(anyhow::Error::msg)?;
    let tx = state.db.transaction()?;
    ipam::init(&tx, "bench", &subnet, &["10.0.0.1".parse()?])?;
    tx.commit()?;
    let mut costs = Vec::with_capacity(60_000);
    for _ in 0..60_000 {
        let t = Instant::now();
        let tx = state.db.transaction()?;
        ipam::allocate(&tx, "bench", &subnet)?;
        tx.commit()?;
        costs.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut medians = Vec::new();
    for start in [0, 9_000, 29_000, 59_000] {
        let mut w = costs[start..start + WINDOW].to_vec();
        w.sort_by(f64::total_cmp);
        let (median, p90) = (w[WINDOW / 2], w[WINDOW * 9 / 10]);
        println!("allocations {:>6}..{:<6}: median {median:6.1} us, p90 {p90:6.1} us", start + 1, start + WINDOW);
        medians.push(median);
    }
    println!("ratio of medians, 60 000th window / 1st window: {:.2}", medians[3] / medians[0]);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
