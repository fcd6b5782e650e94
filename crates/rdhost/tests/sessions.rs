//! Sessions at the boundary: a real host on loopback, our headless client.

mod common;

use std::time::Duration;

use common::{Host, on_screen, shell_token};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_survives_disconnect_and_reconnect() {
    let host = Host::start(&[("alice", "alice-pw-1")], "");
    let mut client = rdhost_client::connect(host.client("alice", "alice-pw-1")).await.expect("alice logs in");
    assert!(client.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap(), "host announces the session id");
    let session = client.server_session_id().unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, "#") || on_screen(c, "$")).await.unwrap(), "a prompt appears");

    let (command, token) = shell_token();
    client.type_text(&command).await.unwrap();
    let shown = client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap();
    if !shown {
        client.save_png(&common::artifacts_dir().join("typed.png")).unwrap();
    }
    assert!(shown, "the shell's output {token} is on the client's screen");
    client.disconnect().await.unwrap();

    let mut again = rdhost_client::connect(host.client("alice", "alice-pw-1")).await.expect("alice logs in again");
    again.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap();
    assert_eq!(again.server_session_id(), Some(session), "same session after reconnect");
    assert!(
        again.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap(),
        "the earlier output is still on screen"
    );
    again.disconnect().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Several users, session pick, wrong password, logoff, takeover.

use rdhost_client::{Client, ConnectError, SessionError};

/// A command whose output (`x<product>y`) only appears when the shell evaluated it; unique per
/// call within this process, unlike `shell_token` which can repeat.
fn unique_token() -> (String, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let a = 1000 + (std::process::id() % 9000);
    let b = 101 + n * 17;
    (format!("echo x$(({a}*{b}))y\n"), format!("x{}y", a * b))
}

/// Log in and wait for the host to announce the session id and for a prompt.
async fn login(host: &Host, cfg: rdhost_client::ClientConfig) -> (Client, u32) {
    let user = cfg.username.clone();
    let mut client = rdhost_client::connect(cfg).await.unwrap_or_else(|e| panic!("{user} logs in: {e}\nhost log:\n{}", host.log()));
    assert!(client.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap(), "{user}: host announces the session id");
    let id = client.server_session_id().unwrap();
    (client, id)
}

/// Type a fresh token into the shell and wait for its output; returns the token.
async fn shows_new_token(client: &mut Client, name: &str) -> String {
    let (command, token) = unique_token();
    client.type_text(&command).await.unwrap();
    let shown = client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap();
    if !shown {
        client.save_png(&common::artifacts_dir().join(format!("{name}.png"))).unwrap();
    }
    assert!(shown, "{name}: the shell's output {token} is on the client's screen");
    token
}

/// The Set Error Info code with which the server ended a pumping client (`None` if it did not
/// end within `timeout`).
async fn closed_code(client: &mut Client, timeout: Duration) -> Option<Option<u32>> {
    match client.pump_until(timeout, |c| c.closed()).await {
        Ok(true) => Some(client.error_info()),
        Ok(false) => None,
        Err(e @ SessionError::Closed { .. }) => Some(e.closed_with()),
        Err(e) => panic!("pumping failed other than by a server close: {e}"),
    }
}

/// A refused logon: the refusal may come during the connection sequence (`Refused`, or
/// `AuthenticationFailed` for codes that mean access denied) or right after activation.
async fn refusal_code(result: Result<Client, ConnectError>) -> Option<u32> {
    match result {
        Err(ConnectError::Refused { error_info }) => error_info,
        Err(ConnectError::AuthenticationFailed { detail }) => {
            let detail = detail.expect("refusal names the error info");
            let hex = detail.split("0x").nth(1).expect("refusal detail has a code");
            let hex: String = hex.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            Some(u32::from_str_radix(&hex, 16).unwrap())
        }
        Err(e) => panic!("refused with an unexpected error: {e}"),
        Ok(mut client) => {
            closed_code(&mut client, WAIT).await.expect("the host ends a refused connection")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_get_two_sessions_and_see_only_their_own_screen() {
    let host = Host::start(&[("alice", "alice-pw-1"), ("bob", "bob-pw-1")], "");
    let (mut alice, alice_id) = login(&host, host.client("alice", "alice-pw-1")).await;
    let (mut bob, bob_id) = login(&host, host.client("bob", "bob-pw-1")).await;
    assert_ne!(alice_id, bob_id, "two users, two sessions");

    let alice_token = shows_new_token(&mut alice, "two-users-alice").await;
    let bob_token = shows_new_token(&mut bob, "two-users-bob").await;
    // Let each client take whatever else the host sends, then look for the other's token.
    alice.pump_for(Duration::from_millis(500)).await.unwrap();
    bob.pump_for(Duration::from_millis(500)).await.unwrap();
    assert!(on_screen(&alice, &alice_token), "alice still sees her token");
    assert!(!on_screen(&alice, &bob_token), "bob's output must not reach alice's screen");
    assert!(!on_screen(&bob, &alice_token), "alice's output must not reach bob's screen");
    assert!(!alice.closed() && !bob.closed(), "both stay connected");
    alice.disconnect().await.unwrap();
    bob.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pick_by_id_is_honoured_for_the_owner_and_refused_for_others() {
    let host = Host::start(&[("alice", "alice-pw-1"), ("bob", "bob-pw-1")], "");
    let (alice, alice_id) = login(&host, host.client("alice", "alice-pw-1")).await;
    alice.disconnect().await.unwrap();

    // Her own id: she gets that session back.
    let mut cfg = host.client("alice", "alice-pw-1");
    cfg.session_id = Some(alice_id);
    let (mut alice, again) = login(&host, cfg).await;
    assert_eq!(again, alice_id, "alice asking for her session id gets it");
    let token = shows_new_token(&mut alice, "pick-alice").await;

    // Bob asking for alice's session: refused as not his.
    let mut cfg = host.client("bob", "bob-pw-1");
    cfg.session_id = Some(alice_id);
    let code = refusal_code(rdhost_client::connect(cfg).await).await;
    assert_eq!(code, Some(0x9), "another user's session: ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES");
    assert!(host.wait_log("logon refused", WAIT), "the refusal is logged");

    // A session that does not exist: denied.
    let mut cfg = host.client("alice", "alice-pw-1");
    cfg.session_id = Some(alice_id + 1000);
    let code = refusal_code(rdhost_client::connect(cfg).await).await;
    assert_eq!(code, Some(0x7), "a nonexistent session: ERRINFO_SERVER_DENIED_CONNECTION");

    // Alice's session was not touched by either attempt: still hers, still connected, still live.
    alice.pump_for(Duration::from_millis(300)).await.unwrap();
    assert!(!alice.closed(), "alice's terminal is still connected");
    assert!(on_screen(&alice, &token), "alice's screen is unchanged");
    shows_new_token(&mut alice, "pick-alice-after").await;
    alice.disconnect().await.unwrap();
    let (alice, last) = login(&host, host.client("alice", "alice-pw-1")).await;
    assert_eq!(last, alice_id, "alice still owns the same session");
    alice.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_rejected_and_logged_with_the_source_address() {
    let host = Host::start(&[("alice", "alice-pw-1")], "");
    match rdhost_client::connect(host.client("alice", "not-her-password")).await {
        Err(ConnectError::AuthenticationFailed { .. }) => {}
        Err(e) => panic!("wrong password: expected an authentication failure, got {e}"),
        Ok(_) => panic!("wrong password was accepted"),
    }
    assert!(host.wait_log("authentication failed", WAIT), "the failure is logged:\n{}", host.log());
    let log = host.log();
    let line = log.lines().find(|l| l.contains("authentication failed")).unwrap();
    assert!(line.contains("127.0.0.1"), "the log line names the source address: {line}");
    assert!(line.contains("alice"), "the log line names the user: {line}");

    let (mut alice, _) = login(&host, host.client("alice", "alice-pw-1")).await;
    shows_new_token(&mut alice, "after-wrong-password").await;
    alice.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_logs_off_and_the_next_login_gets_a_new_session() {
    let host = Host::start(&[("alice", "alice-pw-1")], "");
    let (mut alice, first) = login(&host, host.client("alice", "alice-pw-1")).await;
    shows_new_token(&mut alice, "logoff-before").await;
    alice.type_text("exit\n").await.unwrap();
    let code = closed_code(&mut alice, WAIT).await.expect("the host ends the connection when the shell exits");
    assert_eq!(code, Some(0xC), "ERRINFO_LOGOFF_BY_USER");

    let (mut alice, second) = login(&host, host.client("alice", "alice-pw-1")).await;
    assert_ne!(second, first, "after logoff a login creates a new session");
    shows_new_token(&mut alice, "logoff-after").await;
    alice.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_takes_over_the_session_and_the_first_is_told_why() {
    let host = Host::start(&[("alice", "alice-pw-1")], "");
    let (mut a, id) = login(&host, host.client("alice", "alice-pw-1")).await;
    let token = shows_new_token(&mut a, "takeover-a").await;

    let (mut b, id_b) = login(&host, host.client("alice", "alice-pw-1")).await;
    assert_eq!(id_b, id, "the second client gets the same session");
    let code = closed_code(&mut a, WAIT).await.expect("the first client is disconnected");
    assert_eq!(code, Some(0x5), "ERRINFO_DISCONNECTED_BY_OTHERCONNECTION");
    assert!(b.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap(), "B shows the session A was showing");
    shows_new_token(&mut b, "takeover-b").await;
    b.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_one_character_sends_only_what_changed() {
    let host = Host::start(&[("dora", "dora-pw-1")], "");
    let mut client = rdhost_client::connect(host.client("dora", "dora-pw-1")).await.expect("logs in");
    assert!(client.pump_until(WAIT, |c| on_screen(c, "#") || on_screen(c, "$")).await.unwrap(), "a prompt appears");
    client.pump_until_idle(Duration::from_millis(300), WAIT).await.unwrap();
    let full_screen = client.bytes_received();
    let before = client.bytes_received();
    client.type_text("q").await.unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, "q")).await.unwrap(), "the typed character is echoed");
    client.pump_until_idle(Duration::from_millis(300), WAIT).await.unwrap();
    let for_one_char = client.bytes_received() - before;
    assert!(
        for_one_char * 20 < full_screen,
        "one character cost {for_one_char} bytes; the whole first screen cost {full_screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_follows_the_clients_size() {
    let host = Host::start(&[("erin", "erin-pw-1")], "");
    let mut client = rdhost_client::connect(host.client("erin", "erin-pw-1")).await.expect("logs in");
    let deadline = std::time::Instant::now() + WAIT;
    while !client.display_control_ready() {
        assert!(std::time::Instant::now() < deadline, "display control opens");
        client.pump_for(Duration::from_millis(50)).await.unwrap();
    }
    let (command, token) = shell_token();
    client.type_text(&command).await.unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap());

    client.request_resize(800, 600).await.unwrap();
    assert!(
        client.pump_until(WAIT, |c| c.width() == 800 && c.height() == 600 && on_screen(c, &token)).await.unwrap(),
        "the session is redrawn at 800x600 (now {}x{})",
        client.width(),
        client.height()
    );
    client.disconnect().await.unwrap();

    // A reconnect with another size resizes the session too, keeping its contents.
    let mut cfg = host.client("erin", "erin-pw-1");
    cfg.width = 1280;
    cfg.height = 720;
    let mut again = rdhost_client::connect(cfg).await.expect("logs in again");
    assert!(
        again.pump_until(WAIT, |c| c.width() == 1280 && on_screen(c, &token)).await.unwrap(),
        "the session takes the new client's size"
    );
    again.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossless_codec_draws_exact_text() {
    let host = Host::start(&[("finn", "finn-pw-1")], "codec = \"lossless\"\n");
    let mut client = rdhost_client::connect(host.client("finn", "finn-pw-1")).await.expect("logs in");
    let (command, token) = shell_token();
    assert!(client.pump_until(WAIT, |c| on_screen(c, "#") || on_screen(c, "$")).await.unwrap());
    client.type_text(&command).await.unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap(), "output arrives over planar");
    let codecs = client.codecs_seen();
    assert!(
        codecs.iter().all(|(codec, _)| *codec == rdhost_client::Codec::Planar),
        "only lossless planar bitmaps were sent: {codecs:?}"
    );
    client.disconnect().await.unwrap();
}
