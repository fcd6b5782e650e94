//! Session management at the boundary: a real host on loopback, headless clients showing its
//! sessions, and the `rdhost` CLI talking to its control socket.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, Host, on_screen};
use rdhost_client::Client;

const WAIT: Duration = Duration::from_secs(20);

/// A command whose output (`x<product>y`) only appears when a shell evaluated it.
fn token(seed: u32) -> (String, String) {
    let a = 1000 + (std::process::id() % 9000);
    let b = 101 + seed * 13;
    (format!("echo x$(({a}*{b}))y\n"), format!("x{}y", a * b))
}

async fn login(host: &Host, user: &str, password: &str) -> (Client, u32) {
    let mut client = rdhost_client::connect(host.client(user, password))
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}\nhost log:\n{}", host.log()));
    assert!(client.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap(), "{user}: the host announces the session");
    let id = client.server_session_id().unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, "#") || on_screen(c, "$")).await.unwrap(), "{user}: a prompt appears");
    (client, id)
}

async fn types_and_sees(client: &mut Client, seed: u32, what: &str) -> String {
    let (command, token) = token(seed);
    client.type_text(&command).await.unwrap();
    let shown = client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap();
    if !shown {
        client.save_png(&common::artifacts_dir().join(format!("control-{what}.png"))).unwrap();
    }
    assert!(shown, "{what}: {token} is on the client's screen");
    token
}

/// The Set Error Info code a pumping client was closed with (None: still open after `timeout`).
async fn closed_with(client: &mut Client, timeout: Duration) -> Option<Option<u32>> {
    match client.pump_until(timeout, |c| c.closed()).await {
        Ok(true) | Err(_) => Some(client.error_info()),
        Ok(false) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_connect_disconnect_logoff_move_live_terminals() {
    let host = Host::start(&[("alice", "alice-pw-1"), ("bob", "bob-pw-1")], "");
    let events = host.events();
    let (mut a_client, a) = login(&host, "alice", "alice-pw-1").await;
    let (mut b_client, b) = login(&host, "bob", "bob-pw-1").await;
    let alice_token = types_and_sees(&mut a_client, 1, "alice").await;

    // query session: the Windows columns, JSON with the fields scripts use.
    let (code, table, err) = host.control(&["query", "session"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.lines().next().unwrap().contains("SESSIONNAME") && table.contains("USERNAME") && table.contains("STATE"), "{table}");
    assert!(table.lines().any(|l| l.contains("alice") && l.contains("Active")), "{table}");
    let sessions = host.sessions();
    let alice = sessions.iter().find(|s| s["id"] == a).expect("alice's session listed");
    assert_eq!(alice["user"], "alice");
    assert_eq!(alice["state"], "Active");
    assert_eq!(alice["client_address"], "127.0.0.1");
    for key in ["client_name", "logon_time", "bytes_in", "bytes_out", "frames_out"] {
        assert!(alice.get(key).is_some(), "{key} missing: {alice}");
    }
    let (code, one, _) = host.control(&["query", "session", "bob", "--json"]);
    assert_eq!(code, 0);
    let one: Vec<serde_json::Value> = serde_json::from_str(&one).unwrap();
    assert_eq!((one.len(), one[0]["id"].as_u64()), (1, Some(u64::from(b))));

    // tscon a /dest:b — bob's client window now shows alice's session, without reconnecting;
    // alice's own client is dropped with 0x5; bob's session is disconnected and keeps running.
    let (code, _, err) = host.control(&["connect", &a.to_string(), "--dest", &b.to_string()]);
    assert_eq!(code, 0, "connect failed: {err}\n{}", host.log());
    assert_eq!(closed_with(&mut a_client, WAIT).await, Some(Some(0x5)), "alice's old client is told another connection took over");
    assert!(
        b_client.pump_until(WAIT, |c| c.server_session_id() == Some(a) && on_screen(c, &alice_token)).await.unwrap(),
        "bob's client shows alice's session (id and screen) after connect"
    );
    assert!(!b_client.closed(), "the moved client never reconnected");
    assert_eq!(host.state_of(a).as_deref(), Some("Active"));
    assert_eq!(host.state_of(b).as_deref(), Some("Disconnected"));
    // It drives the session it now shows.
    types_and_sees(&mut b_client, 2, "moved-client-types").await;

    // tsdiscon: the client is told 0x1 (RPC-initiated disconnect); the session keeps running.
    let (code, _, err) = host.control(&["disconnect", &a.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(closed_with(&mut b_client, WAIT).await, Some(Some(0x1)));
    assert!(host.wait_state(a, Some("Disconnected"), WAIT));

    // logoff: the client gets 0x2 and the session is gone.
    let (mut b2, b_again) = login(&host, "bob", "bob-pw-1").await;
    assert_eq!(b_again, b, "bob gets his disconnected session back");
    let (code, _, err) = host.control(&["logoff", &b.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(closed_with(&mut b2, WAIT).await, Some(Some(0x2)));
    assert_eq!(host.state_of(b), None, "logoff waits until the session is gone");

    // reset: the disconnected alice session ends.
    let (code, _, err) = host.control(&["reset", &a.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(host.wait_state(a, None, WAIT));

    // Errors: the Windows code and name, a non-zero exit.
    let (code, _, err) = host.control(&["logoff", "999"]);
    assert_ne!(code, 0);
    assert!(err.contains("7022") && err.contains("ERROR_CTX_WINSTATION_NOT_FOUND"), "{err}");
    let (code, _, err) = host.control(&["disconnect"]);
    assert_ne!(code, 0, "the test process runs in no session: `current` is meaningless");
    assert!(err.contains("87") || err.contains("7022"), "{err}");

    std::thread::sleep(Duration::from_millis(300));
    for (event, session) in [("logon", a), ("logon", b), ("connect", a), ("disconnect", b), ("logoff", b), ("state-change", a)] {
        assert!(
            events.wait(Duration::ZERO, |e| e["event"] == event && e["session"] == session).is_some(),
            "event {event} for session {session}: {:?}",
            events.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_boxes_are_answered_from_the_client() {
    let host = Host::start(&[("alice", "alice-pw-1")], "");
    let (mut client, a) = login(&host, "alice", "alice-pw-1").await;

    // Without --wait the answer is IDASYNC; the box is on every terminal of the session.
    let (code, out, err) = host.control(&["msg", &a.to_string(), "--title", "Notice", "Backup", "starts", "soon"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("IDASYNC (32001)"), "{out}");
    assert!(client.pump_until(WAIT, |c| on_screen(c, "Backup starts soon")).await.unwrap(), "the box is drawn");
    // Enter presses OK; the box goes and the shell is back.
    client.key(0x1C, false, true).await.unwrap();
    client.key(0x1C, false, false).await.unwrap();
    assert!(client.pump_until(WAIT, |c| !on_screen(c, "Backup starts soon")).await.unwrap(), "OK closes the box");

    // --wait: the client's answer comes back by name and code.
    let socket = host.socket();
    let asking = std::thread::spawn(move || {
        Command::new(BIN)
            .args(["msg", &a.to_string(), "--buttons", "yesno", "--wait", "Restart", "now?", "--socket"])
            .arg(socket)
            .output()
            .unwrap()
    });
    assert!(client.pump_until(WAIT, |c| on_screen(c, "Restart now?")).await.unwrap(), "the yes/no box is drawn");
    client.key(0x15, false, true).await.unwrap(); // Y
    client.key(0x15, false, false).await.unwrap();
    client.pump_for(Duration::from_millis(200)).await.unwrap();
    let out = asking.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("IDYES (6)"), "{}", String::from_utf8_lossy(&out.stdout));

    // --time: nobody answers, IDTIMEOUT.
    let (code, out, err) = host.control(&["msg", &a.to_string(), "--time", "1", "--wait", "Going", "away"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("IDTIMEOUT (32000)"), "{out}");
    // The box does not keep the keyboard: the shell takes typing again.
    types_and_sees(&mut client, 3, "after-msg").await;

    let (code, _, err) = host.control(&["msg", "nobody-here", "hello"]);
    assert_ne!(code, 0);
    assert!(err.contains("7022"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_asks_consent_controls_and_the_hotkey_returns() {
    let host = Host::start(&[("alice", "alice-pw-1"), ("bob", "bob-pw-1")], "shadow = \"control-with-consent\"\n");
    let (mut a_client, a) = login(&host, "alice", "alice-pw-1").await;
    let (mut b_client, b) = login(&host, "bob", "bob-pw-1").await;
    let alice_token = types_and_sees(&mut a_client, 4, "alice-before-shadow").await;
    let bob_token = types_and_sees(&mut b_client, 5, "bob-before-shadow").await;

    // Bob runs `rdhost shadow A --control` inside his own session (no flags: the session knows its host).
    b_client.type_text(&format!("{BIN} shadow {a} --control\n")).await.unwrap();
    let asked = a_client.pump_until(WAIT, |c| on_screen(c, "wants to view")).await.unwrap();
    if !asked {
        a_client.save_png(&common::artifacts_dir().join("control-consent-a.png")).unwrap();
        b_client.save_png(&common::artifacts_dir().join("control-consent-b.png")).unwrap();
    }
    assert!(asked, "alice is asked first\n{}", host.log());
    a_client.key(0x15, false, true).await.unwrap(); // Y: allow
    a_client.key(0x15, false, false).await.unwrap();
    assert!(
        b_client.pump_until(WAIT, |c| on_screen(c, &alice_token)).await.unwrap(),
        "bob's window shows alice's session\n{}",
        host.log()
    );
    assert_eq!(host.state_of(b).as_deref(), Some("Shadow"));
    assert_eq!(host.state_of(a).as_deref(), Some("Active"));
    let alice = host.sessions().into_iter().find(|s| s["id"] == a).unwrap();
    assert_eq!(alice["viewers"][0]["control_level"], "interactive", "{alice}");

    // With control, bob's keys reach alice's shell, and alice sees them too.
    let (command, shared) = token(6);
    b_client.type_text(&command).await.unwrap();
    assert!(a_client.pump_until(WAIT, |c| on_screen(c, &shared)).await.unwrap(), "bob's typing reaches alice's session");
    assert!(b_client.pump_until(WAIT, |c| on_screen(c, &shared)).await.unwrap(), "and bob sees it");

    // Ctrl + keypad * returns bob's window to his own session.
    b_client.key(0x1D, false, true).await.unwrap();
    b_client.key(0x37, false, true).await.unwrap();
    b_client.key(0x37, false, false).await.unwrap();
    b_client.key(0x1D, false, false).await.unwrap();
    assert!(b_client.pump_until(WAIT, |c| on_screen(c, &bob_token)).await.unwrap(), "the hotkey returns bob to his session");
    assert!(host.wait_state(b, Some("Active"), WAIT));

    // Refused consent: 7044, and bob's window stays home.
    let socket = host.socket();
    b_client.type_text(&format!("{BIN} shadow {a} --socket {} ; echo shadow-exit-$?\n", socket.display())).await.unwrap();
    assert!(a_client.pump_until(WAIT, |c| on_screen(c, "wants to view")).await.unwrap());
    a_client.key(0x31, false, true).await.unwrap(); // N
    a_client.key(0x31, false, false).await.unwrap();
    assert!(b_client.pump_until(WAIT, |c| on_screen(c, "shadow-exit-1")).await.unwrap(), "refused shadow exits non-zero");
    assert_eq!(host.state_of(b).as_deref(), Some("Active"));

    // From outside any session, shadow makes no sense.
    let (code, _, err) = host.control(&["shadow", &a.to_string()]);
    assert_ne!(code, 0);
    assert!(!err.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_inside_a_session_find_it_without_flags() {
    let host = Host::start(&[("alice", "alice-pw-1")], "");
    let (mut client, a) = login(&host, "alice", "alice-pw-1").await;
    // `query session` inside the session marks it with '>' (found from the calling process, not
    // from anything the caller says).
    client.type_text(&format!("{BIN} query session | grep '^>' | tr -s ' ' | cut -d' ' -f3 | sed 's/^/mine-is-/'\n")).await.unwrap();
    assert!(
        client.pump_until(WAIT, |c| on_screen(c, &format!("mine-is-{a}"))).await.unwrap(),
        "query session inside the session marks it\n{}",
        host.log()
    );
    // tsdiscon from inside: 0xB (disconnected by the user), and the session keeps running.
    client.type_text(&format!("{BIN} disconnect\n")).await.unwrap();
    assert_eq!(closed_with(&mut client, WAIT).await, Some(Some(0xB)));
    assert!(host.wait_state(a, Some("Disconnected"), WAIT));
    // logoff from inside: 0xC, and the session is gone.
    let (mut again, same) = login(&host, "alice", "alice-pw-1").await;
    assert_eq!(same, a);
    again.type_text(&format!("{BIN} logoff\n")).await.unwrap();
    assert_eq!(closed_with(&mut again, WAIT).await, Some(Some(0xC)));
    assert!(host.wait_state(a, None, WAIT));
}
