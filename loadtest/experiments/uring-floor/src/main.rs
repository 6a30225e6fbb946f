//! The stack's floor (loadtest/src/floor.rs: hyper over tokio-rustls with the gateway's
//! TLS configuration, one fixed answer) on one thread, driven by epoll (tokio) or by
//! io_uring (monoio). Only the driver differs: every connection runs the floor's own
//! `connection`, generic over tokio's I/O traits, which monoio offers two ways.
//!
//! uring-floor MODE LISTEN DEMO_DIR ANSWER_FILE, MODE one of:
//!   epoll        tokio's current-thread runtime (what `permitgate-load floor` runs)
//!   uring        monoio, completion-based reads and writes (monoio-compat copies between
//!                its owned buffers and rustls's)
//!   uring-coop   the same, the ring set up with COOP_TASKRUN and TASKRUN_FLAG
//!   uring-defer  the same, the ring set up with SINGLE_ISSUER and DEFER_TASKRUN
//!   uring-poll   monoio, readiness through the ring, reads and writes by system call
//!
//! On monoio, clients must speak HTTP/1.1 (run.sh's generator does): the floor's HTTP/2
//! spawns its streams on tokio, which is not running there.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use monoio::io::IntoPollIo;
use permitgate_load::floor::{connection, serve, tls_config};
use tokio_rustls::TlsAcceptor;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Epoll,
    Uring,
    UringCoop,
    UringDefer,
    UringPoll,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, listen, demo, answer] = args.as_slice() else {
        bail!("usage: uring-floor epoll|uring|uring-coop|uring-defer|uring-poll LISTEN DEMO_DIR ANSWER_FILE");
    };
    let mode = match mode.as_str() {
        "epoll" => Mode::Epoll,
        "uring" => Mode::Uring,
        "uring-coop" => Mode::UringCoop,
        "uring-defer" => Mode::UringDefer,
        "uring-poll" => Mode::UringPoll,
        other => {
            bail!("MODE: {other} is not one of epoll, uring, uring-coop, uring-defer, uring-poll")
        }
    };
    let listen: SocketAddr = listen
        .parse()
        .with_context(|| format!("LISTEN: {listen}"))?;
    let pki = PathBuf::from(demo).join("pki");
    let tls = tls_config(
        &pki.join("server.crt"),
        &pki.join("server.key"),
        &pki.join("ca.crt"),
    )
    .context("DEMO_DIR: the demo's server certificate, key and partner CA")?;
    let answer: Bytes = std::fs::read(answer)
        .with_context(|| format!("ANSWER_FILE: {answer}"))?
        .into();
    if mode == Mode::Epoll {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            serve(listener, tls, answer).await;
            Ok(())
        });
    }
    let acceptor = TlsAcceptor::from(tls);
    let mut ring = io_uring::IoUring::builder();
    match mode {
        // Completions' task work runs when the thread next enters the kernel, not by
        // interrupting it (an IPI per completion otherwise).
        Mode::UringCoop => {
            ring.setup_coop_taskrun().setup_taskrun_flag();
        }
        // Completions' task work waits until the thread asks for completions.
        Mode::UringDefer => {
            ring.setup_single_issuer().setup_defer_taskrun();
        }
        _ => {}
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .uring_builder(ring)
        .build()?;
    rt.block_on(async move {
        let listener = monoio::net::TcpListener::bind(listen)?;
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            if mode == Mode::UringPoll {
                let tcp = tcp.into_poll_io()?;
                monoio::spawn(connection(acceptor.clone(), tcp, answer.clone()));
            } else {
                let tcp = monoio_compat::TcpStreamCompat::new(tcp);
                monoio::spawn(connection(acceptor.clone(), tcp, answer.clone()));
            }
        }
    })
}
