//! How connection failures are reported, against tiny fake servers on loopback. No external
//! tools needed.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rdhost_client::{ClientConfig, ConnectError, Security};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

fn config(addr: SocketAddr) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(5),
        ..ClientConfig::new(addr, "tester", "pw")
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

#[tokio::test]
async fn nothing_listening_is_an_io_error() {
    let (l, addr) = listener().await;
    drop(l);
    let err = rdhost_client::connect(config(addr))
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, ConnectError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    });
    let cfg = ClientConfig {
        connect_timeout: Duration::from_millis(300),
        ..config(addr)
    };
    let started = std::time::Instant::now();
    let err = rdhost_client::connect(cfg).await.err().expect("must fail");
    assert!(matches!(err, ConnectError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.abort();
}

/// The first thing on the wire is the pre-connection PDU when a session id is asked for, then
/// the X.224 Connection Request; without a session id, the X.224 request comes first.
#[tokio::test]
async fn the_preconnection_pdu_goes_first_when_a_session_is_requested() {
    for session_id in [Some(0x0000_BEEF_u32), None] {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut first = vec![0u8; 16];
            s.read_exact(&mut first).await.unwrap();
            first
        });
        let cfg = ClientConfig {
            session_id,
            connect_timeout: Duration::from_millis(500),
            ..config(addr)
        };
        let _ = rdhost_client::connect(cfg).await;
        let first = server.await.unwrap();
        match session_id {
            Some(id) => assert_eq!(first, rdhost_client::preconnection_pdu(id)),
            // TPKT version 3: the X.224 Connection Request.
            None => assert_eq!(first[0], 0x03),
        }
    }
}

/// A server that only speaks Standard RDP Security answers our TLS-only request with a
/// negotiation failure (SSL_NOT_ALLOWED_BY_SERVER).
#[tokio::test]
async fn a_negotiation_failure_is_reported_as_such() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = [0u8; 4];
        s.read_exact(&mut req).await.unwrap();
        let len = usize::from(u16::from_be_bytes([req[2], req[3]]));
        let mut rest = vec![0u8; len - 4];
        s.read_exact(&mut rest).await.unwrap();
        // TPKT + X.224 Connection Confirm + RDP_NEG_FAILURE (type 3, flags 0, length 8,
        // failureCode 2 = SSL_NOT_ALLOWED_BY_SERVER).
        let confirm = [
            0x03, 0x00, 0x00, 0x13, 0x0E, 0xD0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x03, 0x00, 0x08,
            0x00, 0x02, 0x00, 0x00, 0x00,
        ];
        s.write_all(&confirm).await.unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    });
    let cfg = ClientConfig {
        security: Security::Tls,
        ..config(addr)
    };
    let err = rdhost_client::connect(cfg).await.err().expect("must fail");
    assert!(
        matches!(err, ConnectError::SecurityNegotiation(_)),
        "{err:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_server_that_hangs_up_before_tls_is_an_io_error() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        drop(s);
    });
    let err = rdhost_client::connect(config(addr))
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, ConnectError::Io(_)), "{err:?}");
    server.await.unwrap();
}
