//! `kleene serve`: kleened's HTTP API on a unix socket, over the same service layer the CLI
//! calls (`commands`). The server keeps one [`Ctx`] for its lifetime, so plugins stay loaded
//! between requests; requests run one at a time on a blocking thread, because the plan
//! engine is synchronous and the host lock serialises changes anyway (a CLI running beside
//! the server takes the same lock, and SQLite is the only truth for both).

mod api;
mod socket;

use crate::commands::{system, Ctx};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The service layer behind every route: one context, one request at a time.
#[derive(Clone)]
pub struct Service {
    ctx: Arc<Mutex<Ctx>>,
}

impl Service {
    /// Run `f` on a blocking thread with the context. A panic inside (a bug, never a
    /// client's doing) answers that one request with an error and leaves the server up.
    pub async fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut Ctx) -> Result<T> + Send + 'static) -> Result<T> {
        let ctx = self.ctx.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut ctx = ctx.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            ctx.begin_request();
            f(&mut ctx)
        })
        .await;
        joined.unwrap_or_else(|e| Err(anyhow::anyhow!("internal error: the request handler failed: {e}")))
    }
}

/// Serve until SIGTERM or SIGINT: stop accepting, finish the requests in flight, remove the
/// socket, return.
pub fn serve(ctx: &mut Ctx, socket: PathBuf) -> Result<()> {
    // main() restores SIGPIPE's default for the one-shot CLI; a server answering a client that
    // has hung up would be killed by it, silently. Ignored, the write fails with EPIPE and
    // only that connection ends.
    // SAFETY: changing a signal disposition; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Like kleened at start: rebuild what state says exists (interfaces, sandboxes, firewall).
    system::reconcile(ctx).context("cannot reconcile the host with state at start")?;
    crate::cluster::watch::spawn(&ctx.global);
    let listener = socket::bind(&socket)?;
    let service = Service { ctx: Arc::new(Mutex::new(ctx.detached())) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let shown = socket.display().to_string();
    let result = runtime.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(listener)?;
        tracing::info!("serving Kleene's API on {shown}");
        eprintln!("kleene: serving on {shown}");
        axum::serve(listener, api::router(service)).with_graceful_shutdown(shutdown_signal()).await?;
        tracing::info!("stopped serving on {shown}");
        anyhow::Ok(())
    });
    socket::remove(&socket);
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the server can only be killed; never stop on our own.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing requests in flight"),
        _ = int.recv() => tracing::info!("SIGINT: finishing requests in flight"),
    }
}
