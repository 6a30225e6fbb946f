//! `permitgate origin`: serve the authority's API (the config's `[origin]`): issuing and
//! revoking temporary permits, published into the repository at once.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use permitgate::clock::SystemClock;
use permitgate::config::Config;
use permitgate::origin::server::{open, OriginService};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let service = open(&config, Arc::new(SystemClock))?;
        let listener = service.bind().await?;
        let ops = service.bind_ops().await?;
        tracing::info!(addr = %listener.local_addr()?, metrics = ?ops.as_ref().and_then(|l| l.local_addr().ok()), "origin listening for the authority's callers");
        let serve_ops = async {
            match ops {
                Some(l) => service.serve_ops(l).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = service.serve(listener) => {}
            _ = serve_ops => {}
            _ = crate::serve::shutdown_signal() => {}
        }
        close(&service);
        tracing::info!("stopped");
        Ok(())
    })
}

/// Serves the origin on a thread of its own until the process ends (`permitgate demo`).
#[cfg(feature = "tools")]
pub fn spawn(config: &Config) -> anyhow::Result<std::net::SocketAddr> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the origin's runtime")?;
    let service = open(config, Arc::new(SystemClock))?;
    let listener = rt.block_on(service.bind())?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("origin".into())
        .spawn(move || rt.block_on(service.serve(listener)))
        .context("starting the origin's thread")?;
    Ok(addr)
}

/// Every answered call's record is on disk already (fsynced before the answer): this
/// only stops the trail's writer.
fn close(service: &OriginService) {
    if let Some(audit) = &service.api.audit {
        audit.close();
    }
}
