//! Pointer shapes from a desktop reach the client: a real Terminal (accept + run) on loopback
//! showing a fake desktop (a canvas with its stage) whose cursor the test sets, against our
//! headless client and, where installed, FreeRDP's xfreerdp.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{FakeDesktop, Proc, Served, Transport, serve, xvfb};
use rdhost_client::{Client, ClientConfig, Pointer, PointerShape, PointerUpdate};
use rdhost_desktop::{CursorShape, Size};
use rdhost_rdp::{TerminalCommand, TerminalEnd};

const WAIT: Duration = Duration::from_secs(10);

/// A `size` x `size` shape: a diagonal gradient whose alpha falls from opaque (top-left) to
/// transparent (bottom-right), so row order, channel order and alpha all show.
fn gradient(size: u16, hotspot: (u16, u16), tint: u8) -> Arc<CursorShape> {
    let mut bgra = Vec::new();
    for y in 0..size {
        for x in 0..size {
            let alpha = 255 - ((u32::from(x) + u32::from(y)) * 255 / (2 * u32::from(size) - 2)) as u8;
            bgra.extend_from_slice(&[tint, (y * 255 / (size - 1)) as u8, (x * 255 / (size - 1)) as u8, alpha]);
        }
    }
    Arc::new(CursorShape { width: size, height: size, hotspot_x: hotspot.0, hotspot_y: hotspot.1, bgra })
}

/// What the client should show for `shape`: the same pixels as RGBA, transparent ones zeroed.
fn as_seen(shape: &CursorShape) -> Pointer {
    let rgba = shape.bgra.chunks(4).flat_map(|p| if p[3] == 0 { [0, 0, 0, 0] } else { [p[2], p[1], p[0], p[3]] }).collect();
    Pointer::Shape(PointerShape {
        width: shape.width,
        height: shape.height,
        hotspot_x: shape.hotspot_x,
        hotspot_y: shape.hotspot_y,
        rgba,
    })
}

fn count(client: &Client, kind: PointerUpdate) -> u64 {
    client.pointer_updates_seen().iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
}

async fn wait_for(client: &mut Client, what: &str, mut pred: impl FnMut(&Client) -> bool) {
    let seen = client.pump_until(WAIT, |c| pred(c)).await.unwrap();
    assert!(seen, "{what}: client shows {:?} after {:?}", client.pointer(), client.pointer_updates_seen());
}

#[tokio::test]
async fn the_client_shows_each_shape_the_desktop_sets() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), true);
            let arrow = gradient(24, (3, 5), 0x40);
            desktop.set_cursor(Some(Arc::clone(&arrow)));
            let Served { addr, commands, end, .. } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            let mut client = rdhost_client::connect(ClientConfig::new(addr, "u", "pw")).await.unwrap();

            // The shape set before the client came is the first it sees.
            wait_for(&mut client, "first shape", |c| *c.pointer() == as_seen(&arrow)).await;
            assert_eq!(count(&client, PointerUpdate::New), 1);

            // A change arrives as a new shape; odd sizes pad the AND mask.
            let beam = gradient(13, (6, 12), 0xC0);
            desktop.set_cursor(Some(Arc::clone(&beam)));
            wait_for(&mut client, "second shape", |c| *c.pointer() == as_seen(&beam)).await;
            assert_eq!(count(&client, PointerUpdate::New), 2);

            // Back to the first: the client takes it from its cache, by index.
            desktop.set_cursor(Some(Arc::new((*arrow).clone())));
            wait_for(&mut client, "cached shape", |c| *c.pointer() == as_seen(&arrow)).await;
            assert_eq!((count(&client, PointerUpdate::Cached), count(&client, PointerUpdate::New)), (1, 2));

            // None is the client's default arrow.
            desktop.set_cursor(None);
            wait_for(&mut client, "default pointer", |c| *c.pointer() == Pointer::Default).await;

            // Past 96 pixels: a Large Pointer update (our client takes up to 384x384).
            let huge = gradient(128, (100, 2), 0x80);
            desktop.set_cursor(Some(Arc::clone(&huge)));
            wait_for(&mut client, "large shape", |c| *c.pointer() == as_seen(&huge)).await;
            assert_eq!(count(&client, PointerUpdate::Large), 1);

            // A resize reactivates the client, which drops its pointer cache: the shape is sent
            // again in full, not by an index the client no longer has.
            desktop.set_cursor(Some(Arc::clone(&beam)));
            wait_for(&mut client, "cached again", |c| *c.pointer() == as_seen(&beam)).await;
            let new_before = count(&client, PointerUpdate::New);
            desktop.canvas.resize(Size::new(800, 600));
            wait_for(&mut client, "shape after resize", |c| c.width() == 800 && *c.pointer() == as_seen(&beam)).await;
            assert_eq!(count(&client, PointerUpdate::New), new_before + 1);

            // Only the newest of a burst of changes matters; it is what the client ends with.
            for tint in 0..50 {
                desktop.set_cursor(Some(gradient(16, (0, 0), tint)));
            }
            let last = gradient(16, (0, 0), 49);
            wait_for(&mut client, "newest of a burst", |c| *c.pointer() == as_seen(&last)).await;

            commands.send(TerminalCommand::Disconnect { error_info: rdhost_rdp::error_info::LOGOFF_BY_USER }).await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::Disconnected { error_info: rdhost_rdp::error_info::LOGOFF_BY_USER });
        })
        .await;
}

/// FreeRDP checks pointer updates strictly (mask lengths, sizes against its Large Pointer
/// flags, cache indices against its cache size) and drops the connection on any mismatch. It
/// must stay connected through every kind of shape we send and leave only when told to.
#[tokio::test]
async fn xfreerdp_stays_connected_through_every_kind_of_pointer_update() {
    let Some((_xvfb, display)) = xvfb() else { return };
    let home = tempfile::tempdir().unwrap();

    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), true);
            desktop.set_cursor(Some(gradient(24, (3, 5), 0x40)));
            let Served { addr, commands, connected, end } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            let log = home.path().join("xfreerdp.log");
            let mut xfreerdp = Proc(
                Command::new("xfreerdp")
                    .arg(format!("/v:{addr}"))
                    .args(["/u:u", "/p:pw", "/cert:ignore", "/sec:tls", "/size:640x480"])
                    .env("DISPLAY", &display)
                    .env("HOME", home.path())
                    .env("XDG_CONFIG_HOME", home.path().join(".config"))
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&log).unwrap())
                    .stderr(std::fs::File::create(home.path().join("xfreerdp.err")).unwrap())
                    .spawn()
                    .unwrap(),
            );
            let client_log = || {
                let read = |name: &str| std::fs::read_to_string(home.path().join(name)).unwrap_or_default();
                format!("{}{}", read("xfreerdp.log"), read("xfreerdp.err"))
            };
            let still_there = |xfreerdp: &mut Proc, step: &str| {
                if let Some(status) = xfreerdp.0.try_wait().unwrap() {
                    panic!("xfreerdp left after {step} ({status}):\n{}", client_log());
                }
            };
            // Each shape, then a moment for xfreerdp to take it in.
            let shapes: Vec<(&str, Option<Arc<CursorShape>>)> = vec![
                ("a 13x13 shape", Some(gradient(13, (6, 12), 0xC0))),
                ("the first shape again (cached)", Some(gradient(24, (3, 5), 0x40))),
                ("a 64x64 shape", Some(gradient(64, (10, 10), 0x10))),
                ("a 200x200 shape", Some(gradient(200, (150, 20), 0x20))),
                ("an empty shape (hidden)", Some(Arc::new(CursorShape { width: 0, height: 0, hotspot_x: 0, hotspot_y: 0, bgra: vec![] }))),
                ("the default pointer", None),
                ("the 13x13 shape again", Some(gradient(13, (6, 12), 0xC0))),
            ];
            // Connected, and a moment to open its window and take the first shape.
            let accepted = tokio::time::timeout(Duration::from_secs(30), connected).await;
            assert!(matches!(accepted, Ok(Ok(_))), "xfreerdp did not connect:\n{}", client_log());
            tokio::time::sleep(Duration::from_secs(1)).await;
            still_there(&mut xfreerdp, "the first shape");
            for (step, shape) in shapes {
                desktop.set_cursor(shape);
                tokio::time::sleep(Duration::from_millis(500)).await;
                still_there(&mut xfreerdp, step);
            }
            commands.send(TerminalCommand::Disconnect { error_info: rdhost_rdp::error_info::LOGOFF_BY_USER }).await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::Disconnected { error_info: rdhost_rdp::error_info::LOGOFF_BY_USER });
            let deadline = Instant::now() + WAIT;
            let status = loop {
                if let Some(status) = xfreerdp.0.try_wait().unwrap() {
                    break status;
                }
                assert!(Instant::now() < deadline, "xfreerdp did not exit after the disconnect");
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            // xfreerdp's exit code for ERRINFO_LOGOFF_BY_USER: it left because we said so.
            assert_eq!(status.code(), Some(12), "{}", client_log());
            let log = client_log();
            assert!(!log.to_lowercase().contains("pointer"), "xfreerdp complained about a pointer:\n{log}");
        })
        .await;
}
