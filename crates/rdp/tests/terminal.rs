//! A terminal is fed: what the client sees comes from a session's stage, what it types goes to
//! the session's input sink, and a live terminal moves to another session without the client
//! reconnecting. Our headless client against a real Terminal on loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{FakeDesktop, Served, Transport, serve, serve_with};
use rdhost_client::{Client, ClientConfig, Pointer};
use rdhost_desktop::{CursorShape, InputEvent, KeyboardLayout, Scancode, Size};
use rdhost_rdp::{Security, TerminalCommand, TerminalEnd, error_info};

const WAIT: Duration = Duration::from_secs(10);

async fn wait_for(client: &mut Client, what: &str, mut pred: impl FnMut(&Client) -> bool) {
    let seen = client.pump_until(WAIT, |c| pred(c)).await.unwrap();
    assert!(
        seen,
        "{what}: client is {}x{}, session {:?}, pixel {:?}",
        client.width(),
        client.height(),
        client.server_session_id(),
        client.pixel(10, 10)
    );
}

/// Wait until `desktop` has received `count` input events.
async fn input_reaches(client: &mut Client, desktop: &FakeDesktop, count: usize) -> Vec<InputEvent> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while desktop.input_seen().len() < count && tokio::time::Instant::now() < deadline {
        client.pump_for(Duration::from_millis(50)).await.unwrap();
    }
    desktop.input_seen()
}

fn solid(width: u16, height: u16, bgra: [u8; 4]) -> Arc<CursorShape> {
    Arc::new(CursorShape { width, height, hotspot_x: 0, hotspot_y: 0, bgra: bgra.repeat(usize::from(width) * usize::from(height)) })
}

fn key(code: u8, pressed: bool) -> InputEvent {
    InputEvent::Key { scancode: Scancode::new(code, false), pressed }
}

#[tokio::test]
async fn client_details_reach_authentication_over_any_byte_stream() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), true);
            // The terminal runs over an in-memory pipe: nothing in it needs a socket.
            let Served { addr, commands, connected, end } = serve(Arc::clone(&desktop), 7, Transport::Pipe).await;
            let mut config = ClientConfig::new(addr, "alice", "pw");
            config.domain = Some("LAB".into());
            config.client_name = "desk-42".into();
            config.session_id = Some(7);
            config.keyboard_layout = 0x0407;
            config.width = 800;
            config.height = 600;
            let mut client = rdhost_client::connect(config).await.unwrap();
            let connected = connected.await.unwrap();

            let seen = &connected.authenticated;
            assert_eq!((seen.user.as_str(), seen.domain.as_deref()), ("alice", Some("LAB")));
            assert_eq!(seen.client_name, "desk-42");
            assert_eq!((seen.pcb_id, seen.pcb_string.as_deref()), (Some(7), None));
            assert_eq!(seen.size, Size::new(800, 600));
            assert_eq!(seen.keyboard_layout, KeyboardLayout::GERMAN);
            assert!(seen.peer.ip().is_loopback());
            assert_eq!(connected.client.size, Size::new(800, 600), "the size the client was given");
            assert_eq!(connected.client.client_name, "desk-42");

            // Save Session Info names the session; the desktop follows the client (a primary).
            wait_for(&mut client, "session id and size", |c| c.server_session_id() == Some(7) && c.width() == 800).await;
            assert_eq!(desktop.canvas.size(), Size::new(800, 600));
            assert_eq!(desktop.layouts.lock().unwrap().first(), Some(&KeyboardLayout::GERMAN));

            commands.send(TerminalCommand::Disconnect { error_info: error_info::RPC_INITIATED_DISCONNECT }).await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::Disconnected { error_info: error_info::RPC_INITIATED_DISCONNECT });
            // The client reads the goodbye as the end of its session, with the code.
            let _ = client.pump_until(WAIT, |c| c.closed()).await;
            assert!(client.closed());
            assert_eq!(client.error_info(), Some(error_info::RPC_INITIATED_DISCONNECT));
        })
        .await;
}

/// Under NLA the account CredSSP proved is the user; the Client Info's other fields still reach
/// the authenticator.
#[tokio::test]
async fn nla_users_reach_authentication_with_the_client_info() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), true);
            let Served { addr, connected, end, commands: _commands } = serve_with(Arc::clone(&desktop), 3, Transport::Tcp, Security::Nla).await;
            let mut config = ClientConfig::new(addr, "bob", "pw");
            config.security = rdhost_client::Security::Nla;
            config.client_name = "laptop".into();
            let mut client = rdhost_client::connect(config).await.unwrap();
            let seen = connected.await.unwrap().authenticated;
            assert_eq!((seen.user.as_str(), seen.client_name.as_str()), ("bob", "laptop"));
            wait_for(&mut client, "session 3", |c| c.server_session_id() == Some(3)).await;
            client.disconnect().await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::ClientLeft);
        })
        .await;
}

#[tokio::test]
async fn a_live_terminal_switches_sessions_without_reconnecting() {
    tokio::task::LocalSet::new()
        .run_until(async {
            // Session 1 follows the client's size; session 2 keeps its own (as a session the
            // terminal only views would).
            let one = FakeDesktop::new(Size::new(640, 480), true);
            one.fill([200, 0, 0]);
            one.set_cursor(Some(solid(8, 8, [0, 0, 255, 255])));
            let two = FakeDesktop::new(Size::new(800, 600), false);
            two.fill([0, 0, 200]);
            two.set_cursor(Some(solid(8, 8, [255, 0, 0, 255])));

            let Served { addr, commands, connected, end } = serve(Arc::clone(&one), 1, Transport::Tcp).await;
            let mut config = ClientConfig::new(addr, "u", "pw");
            (config.width, config.height) = (640, 480);
            let mut client = rdhost_client::connect(config).await.unwrap();
            let connected = connected.await.unwrap();
            wait_for(&mut client, "session 1", |c| c.server_session_id() == Some(1) && c.pixel(10, 10) == Some([200, 0, 0])).await;
            let red = Pointer::Shape(rdhost_client::PointerShape { width: 8, height: 8, hotspot_x: 0, hotspot_y: 0, rgba: [255, 0, 0, 255].repeat(64) });
            wait_for(&mut client, "session 1's pointer", |c| *c.pointer() == red).await;

            client.key(0x1E, false, true).await.unwrap();
            assert_eq!(input_reaches(&mut client, &one, 1).await, vec![key(0x1E, true)]);

            // Switch: the client is reactivated at session 2's size, told its new session id,
            // shown session 2's pixels and pointer; its input goes to session 2 from now on.
            commands.send(TerminalCommand::Show(two.showing(2, connected.profile))).await.unwrap();
            wait_for(&mut client, "session 2", |c| {
                c.server_session_id() == Some(2) && c.width() == 800 && c.height() == 600 && c.pixel(700, 500) == Some([0, 0, 200])
            })
            .await;
            let blue = Pointer::Shape(rdhost_client::PointerShape { width: 8, height: 8, hotspot_x: 0, hotspot_y: 0, rgba: [0, 0, 255, 255].repeat(64) });
            wait_for(&mut client, "session 2's pointer", |c| *c.pointer() == blue).await;
            assert!(!client.closed());
            client.key(0x30, false, true).await.unwrap();
            assert_eq!(input_reaches(&mut client, &two, 1).await, vec![key(0x30, true)]);
            assert_eq!(one.input_seen(), vec![key(0x1E, true)], "session 1 gets nothing after the switch");
            assert_eq!(two.canvas.size(), Size::new(800, 600), "a sink that does not follow keeps its size");

            // And back: session 1 follows the client, which wants 640x480 again.
            commands.send(TerminalCommand::Show(one.showing(1, connected.profile))).await.unwrap();
            wait_for(&mut client, "session 1 again", |c| {
                c.server_session_id() == Some(1) && c.width() == 640 && c.pixel(10, 10) == Some([200, 0, 0])
            })
            .await;
            wait_for(&mut client, "session 1's pointer again", |c| *c.pointer() == red).await;

            let stats = &connected.stats;
            assert!(stats.frames_in.load(Ordering::Relaxed) >= 2, "two key PDUs");
            assert!(stats.frames_out.load(Ordering::Relaxed) >= 3, "one screen per session shown");
            assert!(stats.bytes_in.load(Ordering::Relaxed) > 0 && stats.bytes_out.load(Ordering::Relaxed) > 640 * 480 / 100);
            assert!(stats.last_input.load(Ordering::Relaxed) > 1_600_000_000_000, "a Unix time in milliseconds");

            client.disconnect().await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::ClientLeft);
        })
        .await;
}
