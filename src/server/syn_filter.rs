//! Shunned sources: a source address the door has just turned away for its own limits
//! (`per_source`, `source_rate`) has its next connection attempts dropped in the kernel for
//! `[unauthenticated] shun_seconds`, by a classic BPF filter on the listening socket
//! (`SO_ATTACH_FILTER`; where nftables' `meter` would drop them, but following the door's
//! own counts).
//!
//! Why: turned away at the door, a flood comes back as fast as it is reset. From one host
//! that was 48,000 connections a second, each completed by the kernel, accepted, counted
//! and reset: kernel work on the gateway's core (a quarter to a third of CPU 0's time in
//! `scenario doors`) that the request workers cannot preempt. A dropped SYN costs the
//! gateway no socket, no accept and no reset, and the client's kernel sends it again a
//! second later.
//!
//! Hosts only, never prefixes: a prefix over its limits is many hosts, each with its
//! connection attempts pending, and when their SYNs were dropped they came back together
//! (after 1 s, 3 s...), in waves that overflowed the receiving CPU's packet backlog and took
//! other clients' packets with them (new connections' p99 past 800 ms, measured with
//! prefix shuns: docs/benchmarks.md, "Doors and prices"). A prefix over its limits is reset
//! at the door, as before.
//!
//! Only fresh SYNs are matched: established connections and handshakes under way are
//! untouched (an accepted socket keeps the filter it was accepted with, which let its
//! source in). Partner networks have no per-source limits, so they are never shunned. The
//! program is rebuilt at most every [`REBUILD_EVERY`] and holds at most [`MAX_ENTRIES`]
//! sources (classic BPF's 4,096 instructions); beyond that a source is reset at the door
//! as before.

use std::collections::HashMap;
use std::time::Duration;

use ipnet::IpNet;
use prometheus::IntGauge;
use tokio::time::Instant;

/// Sources shunned at once, at most: an IPv6 entry is at most 13 instructions.
pub const MAX_ENTRIES: usize = 300;
/// Sources turned away within milliseconds of each other get one rebuild.
pub const REBUILD_EVERY: Duration = Duration::from_millis(10);
/// A source turned away again soon after its shun ended is shunned twice as long as
/// before, up to 2^5 times `shun_seconds`: its connection attempts whose SYNs were
/// dropped come back one second later, then three, seven...; a shun as long as the first
/// wait would let each of them in to be reset again.
const MAX_DOUBLINGS: u32 = 5;

struct Shun {
    until: Instant,
    doublings: u32,
}

pub struct SynFilter {
    shun_for: Duration,
    shunned: HashMap<IpNet, Shun>,
    /// Shuns that have ended, remembered for as long as they lasted.
    ended: HashMap<IpNet, Shun>,
    /// The entries changed since the program was last attached.
    changed: bool,
    attached_at: Option<Instant>,
    /// Sources in the attached program (`permitgate_shunned_sources`).
    gauge: IntGauge,
}

impl SynFilter {
    /// `shun_for` zero: nothing is ever shunned.
    pub fn new(shun_for: Duration, gauge: IntGauge) -> SynFilter {
        SynFilter {
            shun_for,
            shunned: HashMap::new(),
            ended: HashMap::new(),
            changed: false,
            attached_at: None,
            gauge,
        }
    }

    /// Drops `net`'s connection attempts from the next rebuild on, for `shun_for`, or
    /// twice its last shun if that ended less than its length ago. A source already
    /// shunned keeps its end: what reaches the door now was sent before its shun.
    pub fn shun(&mut self, net: IpNet, now: Instant) {
        if self.shun_for.is_zero()
            || self.shunned.contains_key(&net)
            || self.shunned.len() >= MAX_ENTRIES
        {
            return;
        }
        let doublings = match self.ended.remove(&net) {
            Some(last) if now < last.until + length(self.shun_for, last.doublings) => {
                (last.doublings + 1).min(MAX_DOUBLINGS)
            }
            _ => 0,
        };
        let until = now + length(self.shun_for, doublings);
        self.shunned.insert(net, Shun { until, doublings });
        self.changed = true;
    }

    /// When [`SynFilter::apply`] has work: a change to attach, or a shun to end.
    pub fn due(&self) -> Option<Instant> {
        let change = self.changed.then(|| {
            self.attached_at
                .map_or(Instant::now(), |t| t + REBUILD_EVERY)
        });
        let expiry = self.shunned.values().map(|s| s.until).min();
        match (change, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the shuns that are over and, if the list changed, attaches its program to
    /// `listener` (or detaches the filter when nothing is left).
    pub fn apply(&mut self, listener: socket2::SockRef<'_>, now: Instant) {
        for (net, s) in self.shunned.extract_if(|_, s| s.until <= now) {
            self.ended.insert(net, s);
            self.changed = true;
        }
        let shun_for = self.shun_for;
        self.ended
            .retain(|_, s| now < s.until + length(shun_for, s.doublings));
        let rebuild_due = self.attached_at.is_none_or(|t| now >= t + REBUILD_EVERY);
        if !self.changed || !rebuild_due {
            return;
        }
        let nets: Vec<IpNet> = self.shunned.keys().copied().collect();
        match attach(&listener, &nets) {
            Ok(()) => self.gauge.set(nets.len() as i64),
            Err(e) => {
                // The door still resets these sources' connections; only the saving is lost.
                tracing::warn!(error = %e, "could not attach the SYN filter");
                self.gauge.set(0);
            }
        }
        self.changed = false;
        self.attached_at = Some(now);
    }
}

/// A shun after `doublings` doublings.
fn length(shun_for: Duration, doublings: u32) -> Duration {
    shun_for * (1 << doublings)
}

/// Classic BPF's longest program (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

#[cfg(target_os = "linux")]
fn attach(listener: &socket2::SockRef<'_>, nets: &[IpNet]) -> std::io::Result<()> {
    if nets.is_empty() {
        return listener.detach_filter();
    }
    let program = program(nets);
    if program.len() > MAX_INSTRUCTIONS {
        return Err(std::io::Error::other(format!(
            "{} instructions: too many shunned sources for one filter",
            program.len()
        )));
    }
    listener.attach_filter(&program)
}

#[cfg(not(target_os = "linux"))]
fn attach(_listener: &socket2::SockRef<'_>, _nets: &[IpNet]) -> std::io::Result<()> {
    Ok(())
}

/// The filter: a packet is kept (all of it) unless it is a SYN without ACK from one of
/// `nets`; dropped, it is kept 0 bytes. Loads at `SKF_NET_OFF` read the IP header, offset
/// 0 is the TCP header; word loads are big-endian.
#[cfg(target_os = "linux")]
fn program(nets: &[IpNet]) -> Vec<socket2::SockFilter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RSH,
    };
    const TCP_FLAGS: u32 = 13;
    const ACK: u32 = 0x10;
    const SYN: u32 = 0x02;
    // Jumps count from the next instruction.
    let mut p = vec![
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, TCP_FLAGS),
        op(BPF_JMP | BPF_JSET | BPF_K, 6, 0, ACK), // 1: an ACK: keep (8)
        op(BPF_JMP | BPF_JSET | BPF_K, 0, 5, SYN), // 2: not a SYN: keep (8)
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, net_at(0)),
        op(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 4), // the IP version
        op(BPF_JMP | BPF_JEQ | BPF_K, 3, 0, 4), // 5: IPv4: its part (9)
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 6), // 6: IPv6: to 7; else keep (8)
        op(BPF_JMP | BPF_JA, 0, 0, 0),          // 7: to the IPv6 part, set below
        ret(KEEP),
    ];
    for v4 in [true, false] {
        if !v4 {
            let at = p.len();
            p[7] = op(BPF_JMP | BPF_JA, 0, 0, (at - 8) as u32);
        }
        for net in nets.iter().filter(|n| n.addr().is_ipv4() == v4) {
            dropping(&mut p, net);
        }
        p.push(ret(KEEP));
    }
    p
}

#[cfg(target_os = "linux")]
const KEEP: u32 = u32::MAX;
#[cfg(target_os = "linux")]
const DROP: u32 = 0;

#[cfg(target_os = "linux")]
fn op(code: u32, jt: u8, jf: u8, k: u32) -> socket2::SockFilter {
    socket2::SockFilter::new(code as u16, jt, jf, k)
}

#[cfg(target_os = "linux")]
fn ret(bytes: u32) -> socket2::SockFilter {
    op(libc::BPF_RET | libc::BPF_K, 0, 0, bytes)
}

/// `at` bytes into the IP header, as an absolute load's offset.
#[cfg(target_os = "linux")]
fn net_at(at: u32) -> u32 {
    (libc::SKF_NET_OFF as u32).wrapping_add(at)
}

/// Drops a packet whose source is in `net` (a host, or any prefix), else goes on past this:
/// the source address (bytes 12 to 16 of an IPv4 header, 8 to 24 of an IPv6 one) word by
/// word as far as the prefix reaches, each word that differs skipping to the end.
#[cfg(target_os = "linux")]
fn dropping(p: &mut Vec<socket2::SockFilter>, net: &IpNet) {
    use libc::{BPF_ABS, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_W};
    let (source_at, octets) = match net.network() {
        std::net::IpAddr::V4(a) => (12, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (8, a.octets().to_vec()),
    };
    let len = u32::from(net.prefix_len());
    let words: Vec<(u32, u32, u32)> = octets
        .chunks_exact(4)
        .zip(0u32..)
        .take(len.div_ceil(32) as usize)
        .map(|(w, i)| {
            let bits = (len - 32 * i).min(32);
            let mask = if bits == 32 {
                u32::MAX
            } else {
                !(u32::MAX >> bits)
            };
            (
                source_at + 4 * i,
                u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                mask,
            )
        })
        .collect();
    // Instructions left in this entry, the final return included.
    let mut left: usize = 1 + words
        .iter()
        .map(|&(_, _, mask)| if mask == u32::MAX { 2 } else { 3 })
        .sum::<usize>();
    for (at, word, mask) in words {
        p.push(op(BPF_LD | BPF_W | BPF_ABS, 0, 0, net_at(at)));
        left -= 1;
        if mask != u32::MAX {
            p.push(op(BPF_ALU | BPF_AND | BPF_K, 0, 0, mask));
            left -= 1;
        }
        left -= 1;
        p.push(op(
            BPF_JMP | BPF_JEQ | BPF_K,
            0,
            u8::try_from(left).unwrap_or(u8::MAX),
            word,
        ));
    }
    p.push(ret(DROP));
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    fn filter() -> SynFilter {
        SynFilter::new(
            Duration::from_secs(1),
            IntGauge::new("shunned", "test").expect("gauge"),
        )
    }

    /// Whether a connection from `source` to `to` completes within 300 ms (a dropped SYN
    /// is sent again only after a second).
    fn connects(source: &str, to: SocketAddr) -> bool {
        let source: std::net::IpAddr = source.parse().expect("ip");
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(to),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind");
        match socket.connect_timeout(&to.into(), Duration::from_millis(300)) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => false,
            Err(e) => panic!("connect from {source}: {e}"),
        }
    }

    /// The door shuns hosts; the program matches any prefix (hosts are /32 and /128).
    #[test]
    fn shunned_hosts_and_prefixes_cannot_connect_and_the_rest_can() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let to = listener.local_addr().expect("addr");
        let mut f = filter();
        let now = Instant::now();
        // An open connection from a source shunned later keeps working.
        let mut open =
            std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1)).expect("connect");
        let (mut served, _) = listener.accept().expect("accept");
        for n in ["127.0.0.2/32", "127.0.5.0/24", "127.0.0.1/32"] {
            f.shun(net(n), now);
        }
        f.apply(socket2::SockRef::from(&listener), now);
        assert_eq!(f.gauge.get(), 3);
        assert!(!connects("127.0.0.2", to), "a shunned host");
        assert!(!connects("127.0.5.9", to), "a host in a shunned prefix");
        assert!(connects("127.0.0.3", to), "another host");
        assert!(connects("127.0.6.9", to), "a host in another prefix");
        use std::io::{Read, Write};
        open.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).expect("read");
        served.write_all(b"pong").expect("write");
        open.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"pong");

        // Once the shuns end, the filter is gone.
        f.apply(
            socket2::SockRef::from(&listener),
            now + Duration::from_secs(1),
        );
        assert_eq!(f.gauge.get(), 0);
        assert!(connects("127.0.0.2", to));
        assert!(connects("127.0.5.9", to));
    }

    /// On a dual-stack socket both families are matched: IPv4 clients arrive as IPv4.
    #[test]
    fn both_families_on_a_dual_stack_socket() {
        let Ok(listener) = TcpListener::bind("[::]:0") else {
            eprintln!("skipped: no IPv6 here");
            return;
        };
        let port = listener.local_addr().expect("addr").port();
        let (v4, v6) = (
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        );
        let mut f = filter();
        let now = Instant::now();
        f.shun(net("127.0.0.2/32"), now);
        f.shun(net("2001:db8::/32"), now);
        f.apply(socket2::SockRef::from(&listener), now);
        assert!(!connects("127.0.0.2", v4));
        assert!(connects("127.0.0.3", v4));
        assert!(connects("::1", v6), "::1 is not in 2001:db8::/32");
        let mut f = filter();
        f.shun(net("::/120"), now);
        f.shun(net("::1/128"), now);
        f.apply(socket2::SockRef::from(&listener), now);
        assert!(!connects("::1", v6));
        assert!(connects("127.0.0.2", v4));
    }

    #[test]
    fn a_network_turned_away_again_soon_is_shunned_twice_as_long() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let mut f = filter();
        let n = net("192.0.2.0/24");
        let until = |f: &SynFilter| f.shunned.get(&n).map(|s| s.until);
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        f.shun(n, t0);
        assert_eq!(until(&f), Some(t0 + s));
        // Turned away again while shunned (sent before): the end stays.
        f.shun(n, t0 + s / 2);
        assert_eq!(until(&f), Some(t0 + s));
        f.apply(socket2::SockRef::from(&listener), t0 + s);
        assert_eq!(until(&f), None);
        // Within its length after the end: twice, then four times...
        f.shun(n, t0 + s * 3 / 2);
        assert_eq!(until(&f), Some(t0 + s * 7 / 2));
        f.apply(socket2::SockRef::from(&listener), t0 + s * 4);
        f.shun(n, t0 + s * 5);
        assert_eq!(until(&f), Some(t0 + s * 9));
        // ...up to 32 times; after a quiet spell as long as the last shun, once again.
        let mut at = t0 + s * 9;
        for _ in 0..6 {
            f.apply(socket2::SockRef::from(&listener), at);
            f.shun(n, at);
            at = until(&f).expect("shunned");
        }
        assert_eq!(f.shunned.get(&n).map(|s| s.doublings), Some(MAX_DOUBLINGS));
        f.apply(socket2::SockRef::from(&listener), at);
        f.shun(n, at + s * 32);
        assert_eq!(until(&f), Some(at + s * 33));
        // Off: nothing is shunned.
        let mut off = SynFilter::new(Duration::ZERO, f.gauge.clone());
        off.shun(n, t0);
        assert!(off.shunned.is_empty() && off.due().is_none());
    }
}
