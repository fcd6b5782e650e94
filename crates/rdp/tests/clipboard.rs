//! Clipboard over `cliprdr`: a real Terminal on loopback showing a fake desktop whose clipboard
//! the test drives, against our headless client and, where installed, xfreerdp `/clipboard`
//! under Xvfb with xclip standing in for the user on the client's side.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{FakeDesktop, Proc, Served, Transport, on_path, serve, xvfb};
use rdhost_client::{Client, ClientConfig};
use rdhost_desktop::{ClipboardError, ClipboardOffer, ClipboardText, MAX_CLIPBOARD_BYTES, Size};

const WAIT: Duration = Duration::from_secs(10);
const CF_UNICODETEXT: u32 = 13;

async fn connect(addr: std::net::SocketAddr) -> Client {
    let mut config = ClientConfig::new(addr, "alice", "pw");
    config.clipboard = true;
    let mut client = rdhost_client::connect(config).await.unwrap();
    assert!(client.pump_until(WAIT, Client::clipboard_ready).await.unwrap(), "the clipboard channel initializes");
    client
}

/// The newest offer the desktop got, once there is one more than `seen`.
async fn offer_after(client: &mut Client, desktop: &FakeDesktop, seen: usize) -> Option<ClipboardOffer> {
    let deadline = Instant::now() + WAIT;
    while desktop.offers.lock().unwrap().len() <= seen {
        assert!(Instant::now() < deadline, "no offer reached the desktop");
        client.pump_for(Duration::from_millis(20)).await.unwrap();
    }
    desktop.offers.lock().unwrap().last().cloned().unwrap()
}

/// The desktop pastes `offer` while the client is pumped (it answers the server's request).
async fn paste_in_desktop(client: &mut Client, offer: &ClipboardOffer) -> Result<ClipboardText, ClipboardError> {
    let fetch = tokio::spawn({
        let offer = offer.clone();
        async move { offer.text().await }
    });
    let deadline = Instant::now() + WAIT;
    while !fetch.is_finished() {
        assert!(Instant::now() < deadline, "the paste did not finish");
        client.pump_for(Duration::from_millis(20)).await.unwrap();
    }
    fetch.await.unwrap()
}

#[tokio::test]
async fn text_goes_both_ways_with_our_client_and_is_fetched_only_when_pasted() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), true);
            let Served { addr, commands: _commands, .. } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            let mut client = connect(addr).await;

            // Client to desktop: an offer at once, the text only when the desktop pastes.
            let seen = desktop.offers.lock().unwrap().len();
            client.set_clipboard("from the client\nline two ✓").await.unwrap();
            let offer = offer_after(&mut client, &desktop, seen).await.expect("text on offer");
            client.pump_for(Duration::from_millis(200)).await.unwrap();
            assert_eq!(client.clipboard_counters().data_requests, 0, "nothing fetched before a paste");
            assert_eq!(paste_in_desktop(&mut client, &offer).await.unwrap().as_ref(), "from the client\nline two ✓");
            assert_eq!(paste_in_desktop(&mut client, &offer).await.unwrap().as_ref(), "from the client\nline two ✓");
            assert_eq!(client.clipboard_counters().data_requests, 2);

            // Desktop to client: a Format List, then the text when the client pastes.
            let lists = client.clipboard_counters().format_lists;
            desktop.clipboard.send_replace(Some("from the session\n".into()));
            assert!(client.pump_until(WAIT, |c| c.clipboard_counters().format_lists > lists).await.unwrap());
            assert!(client.server_clipboard_formats().unwrap().contains(&CF_UNICODETEXT));
            assert_eq!(client.paste(WAIT).await.unwrap(), "from the session\n");

            // The desktop's text goes away: an empty list, and a paste finds nothing.
            desktop.clipboard.send_replace(None);
            assert!(client.pump_until(WAIT, |c| c.server_clipboard_formats() == Some(&[])).await.unwrap());
            assert!(client.paste(WAIT).await.is_err());

            // The client copies again: a new offer; the old one is gone.
            let seen = desktop.offers.lock().unwrap().len();
            client.set_clipboard("second").await.unwrap();
            let second = offer_after(&mut client, &desktop, seen).await.unwrap();
            assert_ne!(second.id(), offer.id());
            assert_eq!(paste_in_desktop(&mut client, &offer).await, Err(ClipboardError::Gone));
            assert_eq!(paste_in_desktop(&mut client, &second).await.unwrap().as_ref(), "second");
        })
        .await;
}

#[tokio::test]
async fn oversized_text_is_refused_and_the_connection_goes_on() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(320, 240), true);
            let Served { addr, commands: _commands, .. } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            let mut client = connect(addr).await;
            let seen = desktop.offers.lock().unwrap().len();
            client.set_clipboard(&"x".repeat(MAX_CLIPBOARD_BYTES + 1)).await.unwrap();
            let offer = offer_after(&mut client, &desktop, seen).await.unwrap();
            assert_eq!(paste_in_desktop(&mut client, &offer).await, Err(ClipboardError::TooLarge { bytes: MAX_CLIPBOARD_BYTES + 1 }));
            // Still connected, and the limit itself passes.
            let seen = desktop.offers.lock().unwrap().len();
            client.set_clipboard(&"y".repeat(MAX_CLIPBOARD_BYTES)).await.unwrap();
            let offer = offer_after(&mut client, &desktop, seen).await.unwrap();
            assert_eq!(paste_in_desktop(&mut client, &offer).await.unwrap().len(), MAX_CLIPBOARD_BYTES);
        })
        .await;
}

#[tokio::test]
async fn a_terminal_that_takes_no_part_neither_offers_nor_is_told() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(320, 240), true);
            desktop.clipboard_allowed.store(false, std::sync::atomic::Ordering::SeqCst);
            let Served { addr, commands: _commands, .. } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            let mut client = connect(addr).await;
            client.set_clipboard("secret of the viewer").await.unwrap();
            desktop.clipboard.send_replace(Some("secret of the session".into()));
            client.pump_for(Duration::from_millis(500)).await.unwrap();
            assert!(desktop.offers.lock().unwrap().is_empty());
            assert_eq!(client.clipboard_counters().format_lists, 0);
            // Allowed from now on (raised to interactive): the next copy is announced.
            desktop.clipboard_allowed.store(true, std::sync::atomic::Ordering::SeqCst);
            desktop.clipboard.send_replace(Some("now shared".into()));
            assert!(client.pump_until(WAIT, |c| c.clipboard_counters().format_lists == 1).await.unwrap());
            assert_eq!(client.paste(WAIT).await.unwrap(), "now shared");
        })
        .await;
}

/// xclip on xfreerdp's display: the user's side of the client's clipboard.
fn xclip(display: &str, args: &[&str]) -> Command {
    let mut command = Command::new("xclip");
    command.args(args).env("DISPLAY", display).stderr(Stdio::null());
    command
}

/// xfreerdp 2.11 `/clipboard`: a copy on its display reaches the desktop, and a copy in the
/// desktop is pasted on its display.
#[tokio::test]
async fn xfreerdp_copies_and_pastes_with_the_session() {
    let Some((_xvfb, display)) = xvfb() else { return };
    if !on_path("xclip") {
        assert!(std::env::var_os("CI").is_none(), "xclip is needed (apt package xclip)");
        eprintln!("skipped: xclip missing");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), true);
            let Served { addr, commands: _commands, .. } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            let _xfreerdp = Proc(
                Command::new("xfreerdp")
                    .arg(format!("/v:{addr}"))
                    .args(["/u:u", "/p:pw", "/cert:ignore", "/sec:tls", "/size:640x480", "+clipboard"])
                    .env("DISPLAY", &display)
                    .env("HOME", home.path())
                    .env("XDG_CONFIG_HOME", home.path().join(".config"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            // A copy on the client's display (xclip keeps serving it).
            let mut copy = xclip(&display, &["-selection", "clipboard", "-i"]).stdin(Stdio::piped()).spawn().unwrap();
            std::io::Write::write_all(&mut copy.stdin.take().unwrap(), "copied on the client\nsecond line".as_bytes()).unwrap();
            let _copy = Proc(copy);
            let offer = wait_for_offer(&desktop, |o| o.is_some()).await.unwrap();
            let text = tokio::time::timeout(WAIT, offer.text()).await.expect("xfreerdp answers").unwrap();
            assert_eq!(text.as_ref(), "copied on the client\nsecond line");

            // A copy in the session: xfreerdp takes its display's clipboard, and a paste there
            // fetches the text from us.
            desktop.clipboard.send_replace(Some("copied in the session ✓\nend".into()));
            let deadline = Instant::now() + WAIT;
            let pasted = loop {
                let out = tokio::task::spawn_blocking({
                    let display = display.clone();
                    move || xclip(&display, &["-selection", "clipboard", "-o"]).output().unwrap()
                })
                .await
                .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if text.contains("session") || Instant::now() > deadline {
                    break text;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(pasted, "copied in the session ✓\nend");
        })
        .await;
}

/// Wait (bounded) for the desktop's newest offer to satisfy `want`.
async fn wait_for_offer(desktop: &FakeDesktop, want: impl Fn(&Option<ClipboardOffer>) -> bool) -> Option<ClipboardOffer> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(offer) = desktop.offers.lock().unwrap().last().filter(|o| want(o)) {
            return offer.clone();
        }
        assert!(Instant::now() < deadline, "no such offer reached the desktop: {:?}", desktop.offers.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
