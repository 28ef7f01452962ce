//! Running the server: bind (127.0.0.1 unless told otherwise), start the engine thread, serve
//! until SIGINT or SIGTERM, then refuse new requests (503), finish those in flight and stop.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::plan::Served;
use crate::queue::Queue;
use crate::routes::{router, AppState};

/// Where to listen and who may ask.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    /// 0: any free port (the bound address is passed to `on_listening`).
    pub port: u16,
    pub api_key: Option<String>,
}

/// Serves `served` until a shutdown signal; `on_listening` gets the bound address.
pub fn run(
    served: Served,
    opts: &ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let queue = Queue::new(served.limits.queue_rows);
        let served = Arc::new(served);
        let engine = crate::engine::spawn(served.clone(), queue.clone())
            .context("starting the engine thread")?;
        let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", opts.host, opts.port))?;
        on_listening(listener.local_addr()?);
        let state = AppState {
            served,
            queue: queue.clone(),
            api_key: opts.api_key.as_deref().map(Arc::from),
            counter: Arc::new(AtomicU64::new(0)),
        };
        let stop = queue.clone();
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move {
                signal().await;
                eprintln!("shutting down: finishing the requests in flight");
                stop.close();
            })
            .await
            .context("serving")?;
        queue.close();
        tokio::task::spawn_blocking(move || engine.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
        Ok(())
    })
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
