//! The partner listening socket, set up for a port anyone can reach.
//!
//! - Its accept queue is as long as the kernel allows (net.core.somaxconn, 4096 on Debian
//!   12): a flood arriving faster than the accept thread takes connections (closing most at
//!   once) must not make a partner's connection attempt wait a second for its SYN to be
//!   sent again.
//! - TCP_DEFER_ACCEPT (nginx's `deferred`): the kernel hands over a connection only once
//!   its first bytes (a ClientHello) have arrived, or the handshake deadline has passed. A
//!   connection that never starts TLS costs no accept, no place at the door and no task
//!   until then.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

const LISTEN_BACKLOG: u32 = 4096;

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
    Ok(listener)
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
