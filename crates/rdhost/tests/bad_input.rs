//! Bad input at the boundary (issue 2, item 8): garbage, a truncated handshake, TLS aborted
//! half-way, a client that sends nothing, a client that stops reading. Each against a real host
//! on loopback with alice logged in and connected throughout: the bad connection is dropped with
//! a log line naming the peer and what was wrong, the host keeps running, and alice's session
//! still answers.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Host, on_screen};
use rdhost_client::Client;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);
/// How long the host may take to notice a bad connection and log it.
const NOTICE: Duration = Duration::from_secs(5);

/// TPKT + X.224 Connection Request + RDP_NEG_REQ asking for TLS (PROTOCOL_SSL), no cookie
/// (MS-RDPBCGR 2.2.1.1): what a `/sec:tls` client sends first.
const X224_REQUEST_TLS: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, // TPKT v3, 19 bytes
    0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, // X.224 CR TPDU
    0x01, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, // RDP_NEG_REQ: PROTOCOL_SSL
];

fn unique_token() -> (String, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let a = 1000 + (std::process::id() % 9000);
    let b = 103 + n * 19;
    (format!("echo x$(({a}*{b}))y\n"), format!("x{}y", a * b))
}

/// A host with alice logged in and her prompt up.
async fn host_with_alice(config: &str) -> (Host, Client) {
    let host = Host::start(&[("alice", "alice-pw-1"), ("bob", "bob-pw-1")], config);
    let mut alice = rdhost_client::connect(host.client("alice", "alice-pw-1"))
        .await
        .unwrap_or_else(|e| panic!("alice logs in: {e}\nhost log:\n{}", host.log()));
    assert!(alice.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap(), "session id announced");
    assert!(alice.pump_until(WAIT, |c| on_screen(c, "$") || on_screen(c, "#")).await.unwrap(), "a prompt appears");
    (host, alice)
}

/// After a bad connection: the host runs, alice is still connected and her shell answers.
async fn alice_still_answers(host: &mut Host, alice: &mut Client, case: &str) {
    assert!(host.is_running(), "{case}: the host process is still running; log:\n{}", host.log());
    let (command, token) = unique_token();
    alice.type_text(&command).await.unwrap_or_else(|e| panic!("{case}: alice's connection broke: {e}"));
    let shown = alice.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap_or_else(|e| panic!("{case}: alice's connection broke: {e}"));
    if !shown {
        alice.save_png(&common::artifacts_dir().join(format!("bad-input-{case}.png"))).unwrap();
    }
    assert!(shown, "{case}: alice's shell still answers ({token} on screen)");
    assert!(!alice.closed(), "{case}: alice is still connected");
}

/// The host's log line about `peer` that contains `what`, waiting up to [`NOTICE`].
fn logged_about(host: &Host, peer: SocketAddr, what: &str) -> String {
    let peer = peer.to_string();
    let deadline = Instant::now() + NOTICE;
    loop {
        let log = host.log();
        if let Some(line) = log.lines().find(|l| l.contains(&peer) && l.contains(what)) {
            eprintln!("host: {line}");
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no log line about {peer} containing {what:?} within {NOTICE:?}; log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the host has closed our socket (EOF or reset), whatever it sends first.
async fn host_closes(stream: &mut TcpStream, case: &str) {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + NOTICE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("{case}: the host did not close the connection within {NOTICE:?}"),
        }
    }
}

async fn raw_connect(host: &Host) -> (TcpStream, SocketAddr) {
    let stream = TcpStream::connect(host.addr).await.expect("tcp connect");
    let local = stream.local_addr().unwrap();
    (stream, local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_dropped_and_logged() {
    let (mut host, mut alice) = host_with_alice("").await;

    // Not RDP at all (first byte is not a TPKT version): an HTTP request.
    let (mut s, peer) = raw_connect(&host).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    host_closes(&mut s, "http").await;
    let line = logged_about(&host, peer, "connection dropped");
    assert!(line.contains("pre-connection PDU"), "the log says what was wrong: {line}");
    alice_still_answers(&mut host, &mut alice, "http").await;

    // A TPKT header announcing a packet, followed by junk that is not X.224.
    let (mut s, peer) = raw_connect(&host).await;
    let mut junk = vec![0x03, 0x00, 0x00, 0x20];
    junk.extend((0u8..28).map(|i| i.wrapping_mul(37) ^ 0xa5));
    s.write_all(&junk).await.unwrap();
    host_closes(&mut s, "tpkt junk").await;
    let line = logged_about(&host, peer, "connection dropped");
    assert!(line.contains("handshake failed"), "the log says what was wrong: {line}");
    alice_still_answers(&mut host, &mut alice, "tpkt junk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_handshake_is_dropped_and_logged() {
    let (mut host, mut alice) = host_with_alice("").await;
    let (mut s, peer) = raw_connect(&host).await;
    s.write_all(&X224_REQUEST_TLS[..10]).await.unwrap();
    s.shutdown().await.unwrap();
    host_closes(&mut s, "truncated").await;
    let line = logged_about(&host, peer, "connection dropped");
    assert!(line.contains("handshake failed") || line.contains("connection error"), "the log says what was wrong: {line}");
    alice_still_answers(&mut host, &mut alice, "truncated").await;
}

/// Send the X.224 request for TLS and read the host's confirm.
async fn negotiate_tls(host: &Host) -> (TcpStream, SocketAddr) {
    let (mut s, peer) = raw_connect(host).await;
    s.write_all(&X224_REQUEST_TLS).await.unwrap();
    let mut confirm = [0u8; 19];
    tokio::time::timeout(NOTICE, s.read_exact(&mut confirm)).await.expect("X.224 confirm in time").expect("X.224 confirm");
    assert_eq!(confirm[0], 0x03, "TPKT");
    assert_eq!(confirm[5], 0xd0, "X.224 Connection Confirm");
    assert_eq!(confirm[11], 0x02, "RDP_NEG_RSP");
    assert_eq!(confirm[15], 0x01, "the host selects TLS");
    (s, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_aborted_half_way_is_dropped_and_logged() {
    let (mut host, mut alice) = host_with_alice("").await;

    // A ClientHello cut off in the middle of its record, then close.
    let (mut s, peer) = negotiate_tls(&host).await;
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    hello.extend([0x5a; 32]);
    s.write_all(&hello).await.unwrap();
    s.shutdown().await.unwrap();
    host_closes(&mut s, "partial hello").await;
    let line = logged_about(&host, peer, "connection dropped");
    assert!(line.contains("TLS handshake failed"), "the log says what was wrong: {line}");
    alice_still_answers(&mut host, &mut alice, "partial hello").await;

    // A handshake record that is not a ClientHello at all.
    let (mut s, peer) = negotiate_tls(&host).await;
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x08, 0xff, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]).await.unwrap();
    host_closes(&mut s, "garbage hello").await;
    let line = logged_about(&host, peer, "connection dropped");
    assert!(line.contains("TLS handshake failed"), "the log says what was wrong: {line}");
    alice_still_answers(&mut host, &mut alice, "garbage hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_at_the_handshake_timeout() {
    let (mut host, mut alice) = host_with_alice("handshake_timeout_secs = 2\n").await;
    let started = Instant::now();
    let (mut s, peer) = raw_connect(&host).await;
    // Alice stays served while the silent connection waits.
    alice.pump_for(Duration::from_millis(500)).await.unwrap();
    host_closes(&mut s, "silent").await;
    let line = logged_about(&host, peer, "connection dropped");
    let took = started.elapsed();
    assert!(line.contains("handshake not finished within 2s"), "the log says what was wrong: {line}");
    assert!(took >= Duration::from_millis(1500), "dropped at the timeout, not before ({took:?})");
    assert!(took <= NOTICE, "dropped within {NOTICE:?} ({took:?})");
    alice_still_answers(&mut host, &mut alice, "silent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_hold_up_others() {
    let (mut host, mut alice) = host_with_alice("").await;
    let mut bob = rdhost_client::connect(host.client("bob", "bob-pw-1")).await.expect("bob logs in");
    assert!(bob.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap(), "bob's session id");
    let bob_session = bob.server_session_id().unwrap();
    assert_ne!(Some(bob_session), alice.server_session_id());
    assert!(bob.pump_until(WAIT, |c| on_screen(c, "$") || on_screen(c, "#")).await.unwrap(), "bob's prompt");
    // A screen that never stops changing, to a client that no longer reads.
    bob.type_text("yes\n").await.unwrap();
    bob.pump_for(Duration::from_millis(300)).await.unwrap();

    // While bob's socket fills up, alice is served as usual.
    alice_still_answers(&mut host, &mut alice, "stalled bob").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice_still_answers(&mut host, &mut alice, "stalled bob, later").await;

    // Bob's client goes away without a goodbye: the host notices and logs the terminal lost.
    let gone = Instant::now();
    drop(bob);
    let needle = format!("session={bob_session}");
    let deadline = Instant::now() + NOTICE;
    let line = loop {
        let log = host.log();
        if let Some(line) = log.lines().find(|l| l.contains("lost") && l.contains(&needle)) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no 'terminal lost' line for bob's session within {NOTICE:?}; log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("host: {line}");
    assert!(line.contains("127.0.0.1:"), "the log names the peer: {line}");
    assert!(gone.elapsed() <= NOTICE);
    alice_still_answers(&mut host, &mut alice, "after bob").await;

    // Bob's session outlived his terminal: he gets it back.
    let mut again = rdhost_client::connect(host.client("bob", "bob-pw-1")).await.expect("bob logs in again");
    assert!(again.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap());
    assert_eq!(again.server_session_id(), Some(bob_session), "bob's session survived his client");
    again.key(0x1D, false, true).await.unwrap(); // Ctrl down
    again.key(0x2E, false, true).await.unwrap(); // C
    again.key(0x2E, false, false).await.unwrap();
    again.key(0x1D, false, false).await.unwrap();
    again.disconnect().await.unwrap();
}
