//! Desktop Sharing at the boundary: a real `rdhost share start` on loopback sharing a shell in
//! the terminal desktop, attendees joining with our client (the base of `rdhost view`) and with
//! `rdhost view` itself, forward and reverse, and the `rdhost share` CLI driving the sharer.

mod common;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sharer::{READY, Sharer};
use common::{BIN, on_screen};
use rdhost_client::Client;

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "s3cret-Pw";

/// A command whose output (`x<product>y`) only appears when the shell evaluated it.
fn token(seed: u32) -> (String, String) {
    let a = 1000 + (std::process::id() % 9000);
    let b = 101 + seed * 13;
    (format!("echo x$(({a}*{b}))y\n"), format!("x{}y", a * b))
}

async fn join(sharer: &Sharer, name: &str) -> Client {
    rdhost_client::connect(sharer.client(name, PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("{name} joins: {e}\nsharer log:\n{}", sharer.log()))
}

/// Join with `password` and expect a refusal: the Set Error Info code it came with (at connect,
/// or at the first pump right after).
async fn refused(sharer: &Sharer, name: &str, password: &str) -> Option<u32> {
    match rdhost_client::connect(sharer.client(name, password)).await {
        Err(e) => e.error_info(),
        Ok(mut client) => {
            let closed = closed_with(&mut client, WAIT).await;
            assert!(closed.is_some(), "{name} was admitted; sharer log:\n{}", sharer.log());
            closed.flatten()
        }
    }
}

/// The Set Error Info code a pumping client was closed with (None: still open after `timeout`).
async fn closed_with(client: &mut Client, timeout: Duration) -> Option<Option<u32>> {
    match client.pump_until(timeout, |c| c.closed()).await {
        Ok(true) | Err(_) => Some(client.error_info()),
        Ok(false) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_levels_gate_graphics_and_input() {
    let sharer = Sharer::start(PASSWORD, &[]);
    let events = sharer.events();
    let mut alice = join(&sharer, "alice").await;
    let attendee = sharer.wait_attendee(WAIT, |a| a["name"] == "alice").expect("alice is listed");
    assert_eq!(attendee["level"], "none", "attendees start at none: {attendee}");
    let id = attendee["id"].as_u64().unwrap().to_string();
    assert!(events.wait(WAIT, |e| e["event"] == "attendee-connected" && e["attendee"]["name"] == "alice").is_some());

    // Level none: no graphics.
    alice.pump_for(Duration::from_millis(1500)).await.unwrap();
    assert_eq!(alice.frames_received(), 0, "an attendee at level none is sent no graphics");
    assert!(alice.participant().is_some_and(|p| !p.may_view && !p.may_interact), "{:?}", alice.participant());

    // View: graphics, input dropped.
    let (code, _, err) = sharer.share(&["level", &id, "view"]);
    assert_eq!(code, 0, "{err}");
    assert!(alice.pump_until(WAIT, |c| on_screen(c, READY)).await.unwrap(), "view: the shared shell's prompt shows");
    assert!(alice.participant().is_some_and(|p| p.may_view && !p.may_interact), "{:?}", alice.participant());
    let (typed, shown) = token(1);
    alice.type_text(&typed).await.unwrap();
    alice.pump_for(Duration::from_millis(1500)).await.unwrap();
    assert!(!alice.closed(), "a view attendee's input is dropped, not punished");
    assert!(!on_screen(&alice, &shown), "a view attendee's keystrokes do not reach the desktop");

    // Interactive: input reaches the shell.
    let (code, _, err) = sharer.share(&["level", &id, "interactive"]);
    assert_eq!(code, 0, "{err}");
    assert!(alice.pump_until(WAIT, |c| c.participant().is_some_and(|p| p.may_interact)).await.unwrap());
    let (typed, shown) = token(2);
    alice.type_text(&typed).await.unwrap();
    let seen = alice.pump_until(WAIT, |c| on_screen(c, &shown)).await.unwrap();
    if !seen {
        alice.save_png(&common::artifacts_dir().join("sharing-interactive.png")).unwrap();
    }
    assert!(seen, "an interactive attendee's keystrokes reach the desktop");
    assert!(events.wait(WAIT, |e| e["event"] == "attendee-updated" && e["attendee"]["level"] == "interactive").is_some());

    // The JSON listing has what the issue asks for.
    let listed = sharer.attendees();
    let a = &listed[0];
    for key in ["id", "name", "level", "invitation", "address", "connected"] {
        assert!(!a[key].is_null(), "attendee JSON has {key}: {a}");
    }

    // A second attendee, told when the first leaves (OD_PARTICIPANT_REMOVED).
    let mut bob = join(&sharer, "bob").await;
    sharer.wait_attendee(WAIT, |a| a["name"] == "bob").expect("bob is listed");
    assert!(bob.pump_until(WAIT, |c| c.participant().is_some()).await.unwrap(), "bob is told about himself");

    // Leaving by itself is reason CLI.
    alice.disconnect().await.unwrap();
    let gone = events.wait(WAIT, |e| e["event"] == "attendee-disconnected").expect("a disconnect event");
    assert_eq!(gone["reason"], "CLI", "{gone}");
    let told = bob.pump_until(WAIT, |c| c.encomsp_counters().participant_removed == 1).await.unwrap();
    assert!(told, "bob is told alice left: {:?}", bob.encomsp_counters());
    assert!(!bob.closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_wrong_password_revoked_and_over_limit() {
    let sharer = Sharer::start(PASSWORD, &["--attendee-limit", "1", "--auto-grant", "view"]);
    // Wrong password.
    assert_eq!(refused(&sharer, "mallory", "wrong").await, Some(0x9), "a wrong password is refused with 0x9");
    assert!(sharer.wait_log("attendee refused", WAIT), "the sharer logs why: {}", sharer.log());
    assert!(sharer.log().contains("password"), "the log names the password: {}", sharer.log());

    // The first attendee fills the invitation; a second is over the limit.
    let mut first = join(&sharer, "first").await;
    assert!(first.pump_until(WAIT, |c| on_screen(c, READY)).await.unwrap(), "auto-grant view: the first attendee sees the shell");
    assert_eq!(refused(&sharer, "second", PASSWORD).await, Some(0x7), "over the limit is refused with 0x7");
    assert!(sharer.wait_log("limit", WAIT), "{}", sharer.log());
    first.pump_for(Duration::from_millis(300)).await.unwrap();
    assert!(!first.closed(), "refusing another attendee leaves the first alone");

    // Revoked: new connections refused, the connected attendee stays.
    let (code, out, err) = sharer.share(&["invitations", "--json"]);
    assert_eq!(code, 0, "{err}");
    let invitations: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(invitations.len(), 1);
    assert_eq!(invitations[0]["attendees"], 1);
    let (code, _, err) = sharer.share(&["revoke", &invitations[0]["id"].to_string()]);
    assert_eq!(code, 0, "{err}");
    first.disconnect().await.unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(refused(&sharer, "late", PASSWORD).await, Some(0x7), "a revoked invitation is refused with 0x7");
    assert!(sharer.wait_log("revoked", WAIT), "{}", sharer.log());

    // Unknown ids say so and exit non-zero.
    let (code, _, err) = sharer.share(&["terminate", "99"]);
    assert_ne!(code, 0);
    assert!(err.contains("99"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_requests_pause_rect_and_terminate() {
    // A shell that keeps drawing: a counter every 50 ms.
    let sharer = Sharer::start_command("i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done", PASSWORD, &["--auto-grant", "view"]);
    let events = sharer.events();
    let mut bob = join(&sharer, "bob").await;
    assert!(bob.pump_until(WAIT, |c| on_screen(c, "tick")).await.unwrap(), "auto-grant view starts attendees at view");

    // A control request raises the event; auto-grant view does not give interactive.
    bob.request_control(true).await.unwrap();
    let request = events.wait(WAIT, |e| e["event"] == "control-level-change-requested").expect("the request event");
    assert_eq!(request["requested"], "interactive", "{request}");
    assert_eq!(request["attendee"]["name"], "bob", "{request}");
    let id = request["attendee"]["id"].as_u64().unwrap().to_string();
    assert_eq!(sharer.attendees()[0]["level"], "view");

    // Pause stops the frames; resume brings them back.
    let (code, _, err) = sharer.share(&["pause"]);
    assert_eq!(code, 0, "{err}");
    assert!(bob.pump_until(WAIT, |c| c.graphics_paused()).await.unwrap(), "GRAPHICS_STREAM_PAUSED reaches the attendee");
    bob.pump_for(Duration::from_millis(300)).await.unwrap();
    let before = bob.frames_received();
    bob.pump_for(Duration::from_millis(1500)).await.unwrap();
    assert_eq!(bob.frames_received(), before, "no frames while paused (the shared shell kept printing)");
    let (code, _, err) = sharer.share(&["resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(bob.pump_until(WAIT, |c| !c.graphics_paused() && c.frames_received() > before).await.unwrap(), "frames after resume");

    // A shared rectangle: the attendee's desktop becomes that size.
    let (code, _, err) = sharer.share(&["rect", "0", "0", "320", "200"]);
    assert_eq!(code, 0, "{err}");
    assert!(bob.pump_until(WAIT, |c| (c.width(), c.height()) == (320, 200)).await.unwrap(), "the attendee shows 320x200, not {}x{}", bob.width(), bob.height());
    assert!(bob.pump_until(WAIT, |c| on_screen(c, "tick")).await.unwrap(), "the top-left of the shell is in the rectangle");
    let (code, _, err) = sharer.share(&["rect", "0", "0", "5000", "200"]);
    assert_ne!(code, 0, "a rectangle outside the desktop is refused");
    assert!(!err.is_empty());
    let (code, _, err) = sharer.share(&["rect", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(bob.pump_until(WAIT, |c| (c.width(), c.height()) == (1024, 768)).await.unwrap(), "the whole desktop again");

    // Terminate: the attendee is disconnected, reason APP.
    let (code, _, err) = sharer.share(&["terminate", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(closed_with(&mut bob, WAIT).await.is_some(), "terminate disconnects the attendee");
    let gone = events.wait(WAIT, |e| e["event"] == "attendee-disconnected").expect("a disconnect event");
    assert_eq!(gone["reason"], "APP", "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drops_everyone_and_ends_the_sharer() {
    let mut sharer = Sharer::start(PASSWORD, &["--auto-grant", "view"]);
    let mut carol = join(&sharer, "carol").await;
    assert!(carol.pump_until(WAIT, |c| on_screen(c, READY)).await.unwrap());
    let (code, _, err) = sharer.share(&["close"]);
    assert_eq!(code, 0, "{err}");
    assert!(closed_with(&mut carol, WAIT).await.is_some(), "close disconnects every attendee");
    assert_eq!(sharer.wait_exit(WAIT), Some(0), "the sharer exits after close:\n{}", sharer.log());
}

/// `rdhost view` as the attendee: forward with an invitation, and reverse (it listens, the
/// sharer dials it with connect-to-client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdhost_view_forward_and_reverse() {
    let dir = tempfile::tempdir().unwrap();
    // Forward.
    let sharer = Sharer::start(PASSWORD, &["--auto-grant", "view"]);
    let shot = dir.path().join("forward.png");
    let out = Command::new(BIN)
        .args(["view", "--invitation", &sharer.invitation, "--password", PASSWORD, "--name", "viewer1", "--snapshot"])
        .arg(&shot)
        .args(["--after-ms", "500"])
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    assert!(out.status.success(), "rdhost view --snapshot: {}\nsharer log:\n{}", String::from_utf8_lossy(&out.stderr), sharer.log());
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG was written");

    // A wrong password: non-zero, and it says why.
    let out = Command::new(BIN)
        .args(["view", "--invitation", &sharer.invitation, "--password", "nope", "--snapshot"])
        .arg(dir.path().join("never.png"))
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong password fails");
    assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
    drop(sharer);

    // Reverse: the sharer listens nowhere.
    let sharer = Sharer::start(PASSWORD, &["--no-listen", "--auto-grant", "view"]);
    let shot = dir.path().join("reverse.png");
    let mut viewer = Command::new(BIN)
        .args(["view", "--listen", "127.0.0.1:0", "--invitation", &sharer.invitation, "--password", PASSWORD, "--name", "behind-nat", "--snapshot"])
        .arg(&shot)
        .args(["--after-ms", "500"])
        .env_remove("DISPLAY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(viewer.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let parsed = rdhost_model::ConnectionString::parse(first.trim()).expect("the viewer prints its connection string first");
    assert!(parsed.listeners.iter().any(|l| l.name == "127.0.0.1" && l.port != 0), "{first}");
    let started = Instant::now();
    let (code, out, err) = sharer.share(&["connect-to-client", first.trim()]);
    assert_eq!(code, 0, "connect-to-client: {err}\nsharer log:\n{}", sharer.log());
    assert!(out.contains("behind-nat"), "it names the admitted attendee: {out}");
    let status = loop {
        if let Some(status) = viewer.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < WAIT, "the reverse viewer finishes its snapshot");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "reverse viewer exit: {status}");
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));

    // Nobody listening: every address is named, the exit is non-zero, and the event says so.
    let events = sharer.events();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody = format!("<E><C><T ID=\"1\" SID=\"0\"><L P=\"{port}\" N=\"127.0.0.1\"/><L P=\"{port}\" N=\"localhost\"/></T></C></E>");
    let (code, _, err) = sharer.share(&["connect-to-client", &nobody]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains(&format!("localhost:{port}")), "every address tried: {err}");
    assert!(events.wait(WAIT, |e| e["event"] == "connection-failed").is_some(), "a connection-failed event");
    // A malformed string is an error, not a crash.
    let (code, _, err) = sharer.share(&["connect-to-client", "<E><C></C>"]);
    assert_ne!(code, 0);
    assert!(!err.is_empty());
}

/// Inside an rdhost session, `rdhost share start` shares that session through its host: the
/// host's own listener admits the attendee, and `rdhost share` reaches the host through the
/// sharer's relay socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_session_is_shared_through_its_host() {
    use common::Host;
    let host = Host::start(&[("alice", "alice-pw-1")], "");
    let mut alice = rdhost_client::connect(host.client("alice", "alice-pw-1")).await.expect("alice logs on");
    assert!(alice.pump_until(WAIT, |c| on_screen(c, "#") || on_screen(c, "$")).await.unwrap(), "alice's prompt");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    alice.type_text("echo host-shared-marker\n").await.unwrap();
    alice
        .type_text(&format!("{BIN} share start --password pw-2 --auto-grant view --control {d}/share.sock > {d}/inv 2> {d}/err &\n"))
        .await
        .unwrap();
    let inv = dir.path().join("inv");
    let deadline = Instant::now() + WAIT;
    let invitation = loop {
        let text = std::fs::read_to_string(&inv).unwrap_or_default();
        if let Some(line) = text.lines().next().filter(|l| l.ends_with("</E>")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no invitation from share start in the session: {}\nhost log:\n{}", std::fs::read_to_string(dir.path().join("err")).unwrap_or_default(), host.log());
        alice.pump_for(Duration::from_millis(100)).await.unwrap();
    };
    let parsed = rdhost_model::ConnectionString::parse(&invitation).unwrap();
    assert!(parsed.listeners.iter().any(|l| l.port == host.addr.port()), "the invitation names the host's own address: {invitation}");
    let mut cfg = rdhost_client::ClientConfig::new(host.addr, "bob", "*");
    cfg.connect_timeout = WAIT;
    cfg.assistance = Some(rdhost_client::Assistance { ticket: parsed.ticket.unwrap(), password: "pw-2".into() });
    let mut bob = rdhost_client::connect(cfg).await.expect("bob joins alice's session through the host");
    assert!(bob.pump_until(WAIT, |c| on_screen(c, "host-shared-marker")).await.unwrap(), "bob sees alice's session\n{}", host.log());
    // Alice's session lists bob as a viewer; `rdhost share` through the relay sees him.
    let out = Command::new(BIN).args(["share", "attendees", "--json", "--control"]).arg(dir.path().join("share.sock")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let attendees: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(attendees.len(), 1);
    assert_eq!(attendees[0]["name"], "bob");
    assert_eq!(attendees[0]["level"], "view");
    let out = Command::new(BIN).args(["share", "close", "--control"]).arg(dir.path().join("share.sock")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(closed_with(&mut bob, WAIT).await.is_some(), "closing the sharing drops bob");
    alice.pump_for(Duration::from_millis(300)).await.unwrap();
    assert!(!alice.closed(), "alice's own terminal stays");
}
