//! Dialling every address at once and keeping the first TCP connection that succeeds
//! (MS-RA 3.1.5: the viewer must try all addresses of an invitation).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::net::TcpStream;

use super::plan::host_port;

/// How long one address may take to resolve and answer.
pub const PER_ADDRESS: Duration = Duration::from_secs(10);

/// One address that did not answer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub address: String,
    pub why: String,
}

/// "127.0.0.1:3390 (connection refused), [::1]:3390 (timed out)".
pub fn list(failed: &[Failed]) -> String {
    failed.iter().map(|f| format!("{} ({})", f.address, f.why)).collect::<Vec<_>>().join(", ")
}

/// Resolves each (name, port) and connects to every resulting address in parallel; returns the
/// first connection made (the others are dropped) or every failure, in the order given.
pub async fn first_of(candidates: &[(String, u16)], per_address: Duration) -> Result<TcpStream, Vec<Failed>> {
    let mut pending: FuturesUnordered<_> = candidates
        .iter()
        .enumerate()
        .map(|(i, (name, port))| async move { (i, candidate(name, *port, per_address).await) })
        .collect();
    let mut failures: Vec<(usize, Vec<Failed>)> = Vec::new();
    while let Some((i, result)) = pending.next().await {
        match result {
            Ok(stream) => return Ok(stream),
            Err(failed) => failures.push((i, failed)),
        }
    }
    failures.sort_by_key(|(i, _)| *i);
    Err(failures.into_iter().flat_map(|(_, f)| f).collect())
}

/// One name: resolved, then each of its addresses dialled at once.
async fn candidate(name: &str, port: u16, per_address: Duration) -> Result<TcpStream, Vec<Failed>> {
    let label = host_port(name, port);
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(per_address, tokio::net::lookup_host((name, port))).await {
        Err(_) => return Err(vec![Failed { address: label, why: "name lookup timed out".into() }]),
        Ok(Err(e)) => {
            // getaddrinfo's text comes behind a generic prefix.
            let text = e.to_string();
            let why = text.strip_prefix("failed to lookup address information: ").unwrap_or(&text);
            return Err(vec![Failed { address: label, why: format!("name not found: {why}") }]);
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        return Err(vec![Failed { address: label, why: "the name has no address".into() }]);
    }
    // A name that is not an address itself: say which address each failure belongs to.
    let is_literal = name.parse::<std::net::IpAddr>().is_ok();
    let mut pending: FuturesUnordered<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, &addr)| async move {
            let result = match tokio::time::timeout(per_address, TcpStream::connect(addr)).await {
                Err(_) => Err("timed out".to_owned()),
                Ok(Err(e)) => Err(describe(&e)),
                Ok(Ok(stream)) => Ok(stream),
            };
            (i, addr, result)
        })
        .collect();
    let mut failed = Vec::new();
    while let Some((i, addr, result)) = pending.next().await {
        match result {
            Ok(stream) => return Ok(stream),
            Err(why) => {
                let address = if is_literal { addr.to_string() } else { format!("{label} → {addr}") };
                failed.push((i, Failed { address, why }));
            }
        }
    }
    failed.sort_by_key(|(i, _)| *i);
    Err(failed.into_iter().map(|(_, f)| f).collect())
}

/// A connect error in a few words.
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::AddrNotAvailable => "address not available here".into(),
        io::ErrorKind::PermissionDenied => "not permitted".into(),
        io::ErrorKind::UnexpectedEof => "the other side closed the connection".into(),
        io::ErrorKind::ConnectionReset => "the other side reset the connection".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_answering_address_wins_and_failures_are_listed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = listener.local_addr().unwrap().port();
        // A port that refuses: bind one, learn its number, close it.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let refused = vec![("127.0.0.1".to_owned(), closed)];
        let err = first_of(&refused, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err, vec![Failed { address: format!("127.0.0.1:{closed}"), why: "connection refused".into() }]);
        assert_eq!(list(&err), format!("127.0.0.1:{closed} (connection refused)"));

        let both = vec![("127.0.0.1".to_owned(), closed), ("127.0.0.1".to_owned(), good)];
        let stream = first_of(&both, Duration::from_secs(5)).await.expect("the listening address answers");
        assert_eq!(stream.peer_addr().unwrap().port(), good);

        let unknown = vec![("no-such-host.invalid".to_owned(), 1)];
        let err = first_of(&unknown, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].address == "no-such-host.invalid:1", "{err:?}");
    }
}
