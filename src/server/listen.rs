//! The partner listening socket, set up for a port anyone can reach.
//!
//! - TCP_DEFER_ACCEPT (nginx's `deferred`): the kernel hands over a connection only once
//!   its first bytes (a ClientHello) have arrived, or the handshake deadline has passed. A
//!   connection that never starts TLS costs no accept, no place at the door and no task
//!   until then; it waits in the kernel's SYN queue.
//! - That queue is as long as the kernel allows (net.core.somaxconn, which caps the
//!   backlog asked for here). Past it the kernel answers with SYN cookies, and a
//!   connection made from a cookie is handed over at once, deferred or not: idle TCP from
//!   many hosts (20,000 connections) then cost 50,000 accepts and resets a second on the
//!   gateway's core, against 1,600 with the queue at 65,535 (docs/benchmarks.md, "The SYN
//!   queue"). The same limit bounds the accept queue, where a flood arriving faster than
//!   the accept thread takes it waits instead of making a partner's attempt wait a second
//!   for its SYN to be sent again.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

/// Asked of listen(2); the kernel takes net.core.somaxconn if that is lower.
const LISTEN_BACKLOG: u32 = i32::MAX as u32;

/// The SYN queue below which a start-up warning names net.core.somaxconn
/// (docs/operations.md).
const RECOMMENDED_QUEUE: u32 = 65_535;

pub(super) fn bind(addr: SocketAddr, handshake_timeout: Duration) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    let secs = i32::try_from(handshake_timeout.as_secs().max(1)).unwrap_or(i32::MAX);
    if let Err(e) = defer_accept(std::os::fd::AsRawFd::as_raw_fd(&listener), secs) {
        tracing::debug!(error = %e, "no TCP_DEFER_ACCEPT on this system");
    }
    match kernel_queue_limit() {
        Some(queue) if queue < RECOMMENDED_QUEUE && !addr.ip().is_loopback() => tracing::warn!(
            queue,
            recommended = RECOMMENDED_QUEUE,
            "net.core.somaxconn limits the partner port's SYN queue: past it, connections \
             that send nothing are handed to the gateway by SYN cookies and cost an accept \
             and a reset each; raise it (docs/operations.md, \"Before authentication\")"
        ),
        Some(queue) => tracing::debug!(queue, "partner port's SYN queue"),
        None => {}
    }
    Ok(listener)
}

/// net.core.somaxconn of this network namespace (a container's own), where there is one.
fn kernel_queue_limit() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn defer_accept(fd: std::os::fd::RawFd, secs: i32) -> std::io::Result<()> {
    // SAFETY: `secs` is a live i32 and its size is passed; `fd` is the listening socket,
    // open for the duration of the call (the caller holds it).
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&secs).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn defer_accept(_fd: i32, _secs: i32) -> std::io::Result<()> {
    Ok(())
}
