//! Reverse connect, the viewer's side: listen, hand out our own connection string, accept the
//! sharer's one connection (later ones are closed), then act as the RDP client on it.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context as _;
use rdhost_model::{ConnectionString, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{info, warn};

#[derive(Debug)]
pub struct Listening {
    listener: TcpListener,
    /// What we bound (the real port when 0 was asked for).
    pub local: SocketAddr,
    /// The addresses our connection string lists, in the order the sharer should try them.
    pub advertised: Vec<IpAddr>,
}

/// Closes every further connection while the accepted one runs; stops when dropped.
pub struct Refuser(JoinHandle<()>);

impl Drop for Refuser {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Listening {
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Listening> {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for the sharer's connection; pick another --listen address or port")
        })?;
        let local = listener.local_addr().context("reading the address we listen on")?;
        let advertised = advertised_addresses(local.ip(), &interface_addresses(), ipv6_sockets_are_dual_stack());
        Ok(Listening { listener, local, advertised })
    }

    /// Our connection string: `<E><C><T ID="1" SID="0"><L P=… N=…/>…</T></C></E>` (MS-RAI
    /// Connection String 2 without the `<A>` element, which only a sharer has a ticket for).
    pub fn connection_string(&self) -> ConnectionString {
        ConnectionString {
            ticket: None,
            kh: None,
            kh2: None,
            transport_id: "1".to_owned(),
            sid: "0".to_owned(),
            listeners: self
                .advertised
                .iter()
                .map(|ip| Listener { port: self.local.port(), name: ip.to_string() })
                .collect(),
        }
    }

    /// Prints the connection string as the first line of standard output, flushed at once: a
    /// script reads it while we wait.
    pub fn announce(&self) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", self.connection_string())
            .and_then(|()| out.flush())
            .context("printing our connection string on standard output")?;
        info!(listen = %self.local, "waiting for the sharer to connect (reverse connect)");
        Ok(())
    }

    /// Waits for the sharer's connection. Later connections are closed as soon as they arrive,
    /// until the returned [`Refuser`] is dropped.
    pub async fn accept(self) -> anyhow::Result<(TcpStream, SocketAddr, Refuser)> {
        let (stream, peer) = self
            .listener
            .accept()
            .await
            .with_context(|| format!("accepting the sharer's connection on {}", self.local))?;
        info!(%peer, "the sharer connected");
        let listener = self.listener;
        let refuser = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((extra, from)) => {
                        warn!(%from, "closed a second incoming connection: this viewer is already connected to a sharer");
                        drop(extra);
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: wait a little rather than spin.
                        warn!("accepting on the reverse-connect listener: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Ok((stream, peer, Refuser(refuser)))
    }
}

/// The addresses a sharer can dial for a listener bound to `bound`: that address, or for an
/// unspecified one (0.0.0.0 / ::) this machine's addresses of the families the socket accepts
/// (a socket on :: takes IPv4 too when `dual_stack`), loopback last (it only helps a sharer on
/// this machine). Link-local IPv6 addresses are left out: they need a scope only this machine
/// can name.
pub fn advertised_addresses(bound: IpAddr, interfaces: &[IpAddr], dual_stack: bool) -> Vec<IpAddr> {
    if !bound.is_unspecified() {
        return vec![bound];
    }
    let want_v6 = bound.is_ipv6();
    let want_v4 = !want_v6 || dual_stack;
    let mut picked: Vec<IpAddr> = interfaces
        .iter()
        .copied()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => want_v4 && !v4.is_unspecified() && !v4.is_broadcast() && !v4.is_multicast(),
            IpAddr::V6(v6) => want_v6 && !v6.is_unspecified() && !v6.is_multicast() && !is_ipv6_link_local(v6),
        })
        .collect();
    // Stable: the interfaces' order within each group is kept.
    picked.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    picked.dedup();
    if picked.is_empty() {
        picked.push(if want_v6 { IpAddr::V6(Ipv6Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) });
    }
    picked
}

/// Whether a socket bound to :: also accepts IPv4 (Linux's default, net.ipv6.bindv6only = 0).
fn ipv6_sockets_are_dual_stack() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").map_or(true, |v| v.trim() == "0")
}

fn is_ipv6_link_local(ip: &Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

/// The addresses of this machine's interfaces that are up (getifaddrs).
fn interface_addresses() -> Vec<IpAddr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        warn!("cannot list this machine's addresses: {}", std::io::Error::last_os_error());
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) == 0 {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr whose family says its real type.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: AF_INET ⇒ a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 ⇒ a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                found.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_specific_address_is_listed_alone() {
        assert_eq!(advertised_addresses(ip("127.0.0.1"), &[ip("10.1.2.3")], true), vec![ip("127.0.0.1")]);
        assert_eq!(advertised_addresses(ip("::1"), &[], true), vec![ip("::1")]);
    }

    #[test]
    fn unspecified_lists_interfaces_loopback_last() {
        let interfaces =
            [ip("127.0.0.1"), ip("192.168.1.5"), ip("::1"), ip("fe80::1"), ip("2001:db8::7"), ip("10.0.0.9")];
        assert_eq!(
            advertised_addresses(ip("0.0.0.0"), &interfaces, true),
            vec![ip("192.168.1.5"), ip("10.0.0.9"), ip("127.0.0.1")],
            "an IPv4 socket: IPv4 addresses only"
        );
        assert_eq!(
            advertised_addresses(ip("::"), &interfaces, true),
            vec![ip("192.168.1.5"), ip("10.0.0.9"), ip("2001:db8::7"), ip("127.0.0.1"), ip("::1")],
            "a dual-stack socket: both families, no link-local"
        );
        assert_eq!(
            advertised_addresses(ip("::"), &interfaces, false),
            vec![ip("2001:db8::7"), ip("::1")],
            "an IPv6-only socket: IPv6 addresses only"
        );
        assert_eq!(advertised_addresses(ip("0.0.0.0"), &[], true), vec![ip("127.0.0.1")]);
    }

    #[test]
    fn this_machine_has_a_loopback_address() {
        assert!(interface_addresses().iter().any(|a| a.is_loopback()));
    }

    #[tokio::test]
    async fn listens_announces_and_refuses_a_second_connection() {
        let listening = Listening::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let port = listening.local.port();
        assert_ne!(port, 0);
        let cs = listening.connection_string();
        assert_eq!(cs.listeners, vec![Listener { port, name: "127.0.0.1".into() }]);
        let text = cs.to_string();
        assert!(text.starts_with("<E>") && text.ends_with("</E>"), "{text}");
        assert_eq!(ConnectionString::parse(&text).unwrap().listeners, cs.listeners);

        let first = tokio::spawn(TcpStream::connect(("127.0.0.1", port)));
        let (_stream, _peer, _refuser) = listening.accept().await.unwrap();
        let _first = first.await.unwrap().unwrap();
        let mut second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut second, &mut buf),
        )
        .await
        .expect("the second connection is closed promptly");
        assert!(matches!(read, Ok(0) | Err(_)), "closed, not served: {read:?}");
    }
}
