//! `permitgate serve`: run the gateway until SIGTERM or Ctrl-C; SIGHUP reloads.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use permitgate::clock::SystemClock;
use permitgate::config::Config;
use permitgate::server::Gateway;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    serve(Config::load(&args.config)?)
}

pub fn serve(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async move {
        let gw = Arc::new(Gateway::from_config(config, Arc::new(SystemClock))?);
        let mut running = gw.bind().await?;
        match running.metrics_addr {
            Some(m) => tracing::info!(addr = %running.addr, metrics = %m, "listening; loading snapshot"),
            None => tracing::info!(addr = %running.addr, "listening; loading snapshot"),
        }
        let loader = gw.clone();
        let load = tokio::task::spawn_blocking(move || loader.load_snapshot());
        tokio::select! {
            r = load => {
                match r.context("snapshot loader")?.context("refusing to serve")? {
                    Some(info) => tracing::info!(version = info.version, published_at = %info.published_at_text, "snapshot loaded; ready"),
                    None => tracing::info!("no local state yet; not ready until the replication source answers"),
                }
                if running.start_replication(&gw)? {
                    tracing::info!("following the repository for new publications");
                }
            }
            _ = shutdown_signal() => {
                // Requests answered while loading (not-ready) have audit records too.
                tracing::info!("stopping before the snapshot loaded");
                running.drain().await;
                close_audit(&gw).await?;
                return Ok(());
            }
        }
        let reloader = gw.clone();
        let hangups = tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("no SIGHUP handler; reload by changing the files");
                return;
            };
            while hup.recv().await.is_some() {
                let gw = reloader.clone();
                // Refusals are logged and counted inside; the old state stays in use.
                let _ = tokio::task::spawn_blocking(move || gw.reload()).await;
            }
        });
        shutdown_signal().await;
        hangups.abort();
        tracing::info!("draining: no new connections; open ones finish their requests");
        let left = running.drain().await;
        if left > 0 {
            tracing::warn!(connections = left, "drain time is up; closing the rest");
        }
        close_audit(&gw).await?;
        tracing::info!("stopped");
        Ok(())
    });
    // A snapshot load still reading a large file has nothing left to do once the audit
    // log is closed: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Writes and fsyncs the audit records of everything answered (off the async workers).
async fn close_audit(gw: &Arc<Gateway>) -> anyhow::Result<()> {
    let closer = gw.clone();
    tokio::task::spawn_blocking(move || closer.close_audit())
        .await
        .context("closing the audit log")
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
