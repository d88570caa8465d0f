//! `kleene serve`: kleened's HTTP API on a unix socket, over the same service layer the CLI
//! calls (`commands`). The server keeps one [`Ctx`] for its lifetime, so plugins stay loaded
//! between requests; requests run one at a time on a blocking thread, because the plan
//! engine is synchronous and the host lock serialises changes anyway (a CLI running beside
//! the server takes the same lock, and SQLite is the only truth for both).

mod api;
mod docker;
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

/// Where Docker's plugin protocol is answered unless told otherwise: Docker's plugin
/// directory on Linux; nowhere where Docker does not run.
pub fn default_docker_socket() -> Option<PathBuf> {
    cfg!(target_os = "linux").then(|| PathBuf::from("/run/docker/plugins/kleene.sock"))
}

/// Serve until SIGTERM or SIGINT: stop accepting, finish the requests in flight, remove the
/// socket, return. With `docker_socket`, Docker's plugin protocol is answered there too, by
/// the same service.
pub fn serve(ctx: &mut Ctx, socket: PathBuf, docker_socket: Option<PathBuf>) -> Result<()> {
    // main() restores SIGPIPE's default for the one-shot CLI; a server answering a client that
    // has hung up would be killed by it, silently. Ignored, the write fails with EPIPE and
    // only that connection ends.
    // SAFETY: changing a signal disposition; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Like kleened at start: rebuild what state says exists (interfaces, sandboxes, firewall).
    system::reconcile(ctx).context("cannot reconcile the host with state at start")?;
    crate::cluster::watch::spawn(&ctx.global);
    let listener = socket::bind(&socket)?;
    let docker_listener = match &docker_socket {
        Some(path) => match socket::bind(path) {
            Ok(l) => Some(l),
            Err(e) => {
                socket::remove(&socket);
                return Err(e.context("cannot answer Docker's plugin protocol (--no-docker turns it off)"));
            }
        },
        None => None,
    };
    let service = Service { ctx: Arc::new(Mutex::new(ctx.detached())) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let shown = socket.display().to_string();
    let docker_shown = docker_socket.as_ref().map(|p| p.display().to_string());
    let result = runtime.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(listener)?;
        // One signal stops both servers.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let docker = match (docker_listener, &docker_shown) {
            (Some(l), Some(shown)) => {
                let l = tokio::net::UnixListener::from_std(l)?;
                tracing::info!("answering Docker's plugin protocol on {shown}");
                eprintln!("kleene: Docker plugin 'kleene' on {shown}");
                let app = docker::router(service.clone());
                let server = axum::serve(l, app).with_graceful_shutdown(until_stopped(stopped.clone()));
                Some(tokio::spawn(async move { server.await }))
            }
            _ => None,
        };
        tracing::info!("serving Kleene's API on {shown}");
        eprintln!("kleene: serving on {shown}");
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        axum::serve(listener, api::router(service)).with_graceful_shutdown(until_stopped(stopped)).await?;
        if let Some(docker) = docker {
            docker.await??;
        }
        tracing::info!("stopped serving on {shown}");
        anyhow::Ok(())
    });
    socket::remove(&socket);
    if let Some(path) = &docker_socket {
        socket::remove(path);
    }
    // The host ends of pairs stopped just before are deleted before the server exits.
    crate::executor::finish_background_work(std::time::Duration::from_secs(10));
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
