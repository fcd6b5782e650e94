//! The graphics pipeline (MS-RDPEGFX) with a real client: FreeRDP's `xfreerdp` 2.11 offering GFX
//! with H.264 gets AVC420 frames, decodes them (its own log says so), shows a known picture
//! within a lossy codec's tolerance, and its typing reaches the session and shows sharp once the
//! host refines the picture; a client whose graphics pipeline offers no H.264 falls back to the
//! fast-path codecs and works as before. Each xfreerdp runs on a private Xvfb.
//!
//! Skips (with a note) when a tool is missing, unless `CI` is set: then it fails and names the
//! package to install.

mod common;

use common::xfreerdp::{Shot, WAIT, Xfreerdp, tools_present, wait_until};
use common::{Host, RECORDER_IDLE, RECORDER_PRESSED, shell_token};

const ALICE: (&str, &str) = ("alice", "alice-pw-1");
const BOB: (&str, &str) = ("bob", "bob-pw-1");

/// The size the clients ask for: neither side a multiple of 16, so the H.264 picture is padded
/// past the surface (the metablock's regions must stay inside it).
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 700;

/// The host's log line for a terminal that switched to H.264 over the graphics pipeline.
const EGFX_LINE: &str = "codec=\"avc420 over EGFX\"";
/// The host's log line for a graphics pipeline that carries no H.264.
const NO_AVC_LINE: &str = "graphics pipeline without AVC420";

/// Per-channel slack for colours that went through H.264.
const TOLERANCE: u8 = 12;

/// xfreerdp's arguments for `user` against `host` at our size, and `extra`.
fn args(host: &Host, (user, password): (&str, &str), extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("/v:{}", host.addr),
        format!("/u:{user}"),
        format!("/p:{password}"),
        "/cert:ignore".into(),
        format!("/size:{WIDTH}x{HEIGHT}"),
        "/kbd:0x409".into(),
        "-grab-keyboard".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// An xfreerdp with its window open, and the file its graphics pipeline channel logs to.
struct Client {
    window: Xfreerdp,
    /// FreeRDP's rdpgfx channel at debug level: it logs each AVC420 metablock it reads. A file
    /// (WLOG's file appender flushes every line; its console one buffers stdout, and a killed
    /// client would lose what the test reads).
    gfx_log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Client {
    type Target = Xfreerdp;
    fn deref(&self) -> &Xfreerdp {
        &self.window
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Xfreerdp {
        &mut self.window
    }
}

impl Client {
    /// Whether the client logged decoding H.264 (AVC420) from the graphics pipeline.
    fn decoded_h264(&self) -> bool {
        std::fs::read_to_string(&self.gfx_log).unwrap_or_default().lines().any(|l| l.contains("H264_METABLOCK"))
    }

    fn gfx_log(&self) -> String {
        std::fs::read_to_string(&self.gfx_log).unwrap_or_default()
    }
}

fn open(host: &Host, user: (&str, &str), extra: &[&str], label: &str) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let env = [
        ("WLOG_APPENDER", "FILE"),
        ("WLOG_FILEAPPENDER_OUTPUT_FILE_PATH", path.as_str()),
        ("WLOG_FILEAPPENDER_OUTPUT_FILE_NAME", "freerdp.log"),
        ("WLOG_FILTER", "com.freerdp.channels.rdpgfx.client:DEBUG"),
    ];
    let mut window = Xfreerdp::start_args_env(&args(host, user, extra), &env, label);
    window.wait_window(host);
    Client { window, gfx_log: dir.path().join("freerdp.log"), _dir: dir }
}

/// How many of the host's log lines contain `needle`.
fn count(host: &Host, needle: &str) -> usize {
    host.log().lines().filter(|l| l.contains(needle)).count()
}

/// The band of `shot` holding the terminal row `row` (cells of the terminal desktop's 16 px font).
fn row_band(shot: &Shot, row: u32) -> Vec<[u8; 3]> {
    let cell = rdhost_desktop::terminal::cell_metrics(16.0);
    let top = row * u32::from(cell.height);
    (top..(top + u32::from(cell.height)).min(shot.height)).flat_map(|y| (0..shot.width).map(move |x| (x, y))).map(|(x, y)| shot.pixel(x, y)).collect()
}

/// The terminal row `text` is on, in the terminal desktop's font.
fn row_of(shot: &Shot, text: &str) -> Option<u32> {
    rdhost_desktop::terminal::find_text(&shot.rgba, shot.width, shot.height, 16.0, text).map(|(_, row)| row)
}

#[test]
fn xfreerdp_gfx_avc420_decodes_h264_types_and_shows_text_as_sharp_as_lossless() {
    if !tools_present("xfreerdp gfx interop") {
        return;
    }
    let host = Host::start(&[ALICE], "");
    let mut h264 = open(&host, ALICE, &["/gfx:avc420"], "avc420");
    let context = |client: &Client| format!("host log:\n{}\n{} output:\n{}\nits gfx log:\n{}", host.log(), client.label(), client.log(), client.gfx_log());
    assert!(host.wait_log(EGFX_LINE, WAIT), "the host switched the terminal to H.264; {}", context(&h264));
    // A known picture: the whole screen turns green (a change that large goes as H.264), and
    // shows within a lossy codec's tolerance.
    paint(&h264, &host, GREEN);
    assert!(wait_until(WAIT, || h264.decoded_h264()), "xfreerdp decoded H.264; {}", context(&h264));

    // Typing reaches the shell, and its output shows (readable in the terminal's font).
    let (command, token) = shell_token();
    h264.type_line(command.trim_end());
    assert!(h264.wait_text(&token, "typed"), "the shell's output {token} shows; {}", context(&h264));
    // Once the screen is still, the host refines what H.264 blurred: the output's row, read
    // back a moment later, is what a lossless codec shows of it (below).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let shot = h264.shot().expect("a screenshot of the H.264 window");
    let row = row_of(&shot, &token).expect("the output is still on screen");
    let refined = row_band(&shot, row);
    h264.save_artifact(&shot, "refined");

    // A client whose graphics pipeline offers no H.264 (FreeRDP 2.11's plain /gfx sets
    // AVC_DISABLED, and offers no RemoteFX either) falls back to fast-path planar bitmaps:
    // lossless, the reference for the refined picture.
    h264.kill();
    let mut planar = open(&host, ALICE, &["/gfx"], "gfx-planar");
    assert!(planar.wait_text(&token, "reconnected"), "the earlier output {token} shows over planar; {}", context(&planar));
    assert!(host.wait_log(NO_AVC_LINE, WAIT), "the host kept the fast-path codec; {}", context(&planar));
    assert_eq!(count(&host, "codec=\"planar\" gfx=true"), 2, "the reference is lossless; {}", context(&planar));
    assert_eq!(count(&host, EGFX_LINE), 1, "only the first terminal used H.264; {}", context(&planar));
    let shot = planar.shot().expect("a screenshot of the planar window");
    let lossless = row_band(&shot, row);
    assert_eq!(refined.len(), lossless.len());
    let differing = refined.iter().zip(&lossless).filter(|(a, b)| !Shot::near(**a, **b, 2)).count();
    assert!(
        differing * 1000 <= refined.len(),
        "the refined row matches the lossless one ({differing} of {} pixels differ); screenshots in the artifacts; {}",
        refined.len(),
        context(&planar)
    );
    // And the fallback takes input too.
    let (command, token) = shell_token();
    planar.type_line(command.trim_end());
    assert!(planar.wait_text(&token, "typed-planar"), "the shell's output {token} shows over planar; {}", context(&planar));
    assert!(planar.exited().is_none(), "{}", context(&planar));
}

#[test]
fn xfreerdp_gfx_rfx_falls_back_to_remotefx() {
    if !tools_present("xfreerdp gfx interop") {
        return;
    }
    // /gfx:rfx advertises the graphics pipeline with AVC_DISABLED and offers RemoteFX for
    // surface bits: the terminal stays on RemoteFX over fast-path.
    let host = Host::start(&[ALICE], "");
    let client = open(&host, ALICE, &["/gfx:rfx"], "gfx-rfx");
    let context = || format!("host log:\n{}\nxfreerdp output:\n{}", host.log(), client.log());
    assert!(client.wait_any(&["$", "#"], "prompt").is_some(), "a shell prompt shows; {}", context());
    assert!(host.wait_log(NO_AVC_LINE, WAIT), "the host kept the fast-path codec; {}", context());
    assert!(host.log().contains("codec=\"remotefx\" gfx=true"), "{}", context());
    paint(&client, &host, GREEN);
    let (command, token) = shell_token();
    client.type_line(command.trim_end());
    assert!(client.wait_text(&token, "typed"), "the shell's output {token} shows; {}", context());
    assert_eq!(count(&host, EGFX_LINE), 0, "no H.264; {}", context());
    assert!(!client.decoded_h264(), "xfreerdp decoded no H.264; {}", context());
}

#[test]
fn a_host_set_to_lossless_or_no_h264_offers_no_graphics_pipeline() {
    if !tools_present("xfreerdp gfx interop") {
        return;
    }
    for (setting, codec) in [("lossless", "planar"), ("no-h264", "planar")] {
        let host = Host::start(&[ALICE], &format!("codec = \"{setting}\"\n"));
        let client = open(&host, ALICE, &["/gfx:avc420"], &format!("codec-{setting}"));
        let context = || format!("host log:\n{}\nxfreerdp output:\n{}", host.log(), client.log());
        let (command, token) = shell_token();
        assert!(client.wait_any(&["$", "#"], "prompt").is_some(), "{setting}: a shell prompt shows; {}", context());
        client.type_line(command.trim_end());
        assert!(client.wait_text(&token, "typed"), "{setting}: the shell's output {token} shows; {}", context());
        assert!(host.log().contains(&format!("codec=\"{codec}\"")) || host.log().contains(&format!("codec={codec}")), "{setting}: {}", context());
        assert_eq!(count(&host, EGFX_LINE), 0, "{setting}: no H.264; {}", context());
        assert!(!client.decoded_h264(), "{setting}: xfreerdp decoded no H.264; {}", context());
    }
}


#[test]
fn xfreerdp_gfx_avc420_shows_an_x_session_within_tolerance_and_its_keys_arrive() {
    if !tools_present("xfreerdp gfx x11 interop") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (record, command) = common::recorder_command(dir.path());
    let host = Host::start(&[ALICE], &format!("desktop = \"x11\"\nsession_command = {command:?}\n"));

    let client = open(&host, ALICE, &["/gfx:avc420"], "x11");
    let context = || format!("host log:\n{}\nxfreerdp output:\n{}", host.log(), client.log());
    let area = (WIDTH * HEIGHT) as usize;
    assert!(
        client.wait_shot("idle", |s| s.count_near(RECORDER_IDLE, TOLERANCE) > area * 9 / 10),
        "the X session's window shows within {TOLERANCE} per channel; {}",
        context()
    );
    assert!(host.log().contains(EGFX_LINE), "over H.264; {}", context());
    assert!(client.decoded_h264(), "xfreerdp decoded H.264; {}", context());
    client.type_text("q");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&record).unwrap_or_default().lines().any(|l| l.starts_with("key-press") && l.contains("text=q"))),
        "the recorder got the key; it logged:\n{}",
        std::fs::read_to_string(&record).unwrap_or_default()
    );
    assert!(
        client.wait_shot("pressed", |s| s.count_near(RECORDER_PRESSED, TOLERANCE) > area * 9 / 10),
        "the window's new colour shows; {}",
        context()
    );
}

/// Background colours (SGR code, and the xterm RGB the terminal desktop draws it in).
const GREEN: (u8, [u8; 3]) = (42, [0, 205, 0]);
const MAGENTA: (u8, [u8; 3]) = (45, [205, 0, 205]);

/// Wait for a shell prompt in `window`, then clear the screen to `colour`.
fn paint(window: &Client, host: &Host, colour: (u8, [u8; 3])) {
    assert!(window.wait_any(&["$", "#"], "prompt").is_some(), "{}: a shell prompt shows; host log:\n{}", window.label(), host.log());
    window.type_line(&format!("printf '\\033[{}m\\033[H\\033[2J'", colour.0));
    assert!(
        window.wait_shot("painted", |s| s.share_near(colour.1, TOLERANCE) > 0.6),
        "{}: the screen turns {:?}; host log:\n{}\nxfreerdp:\n{}",
        window.label(),
        colour.1,
        host.log(),
        window.log()
    );
}

/// The id of `user`'s Active session, once the host lists one.
fn active_session_of(host: &Host, user: &str) -> u32 {
    let mut id = None;
    assert!(
        wait_until(WAIT, || {
            id = host.sessions().iter().find(|s| s["user"] == user && s["state"] == "Active").and_then(|s| s["id"].as_u64());
            id.is_some()
        }),
        "{user} has an Active session; host log:\n{}",
        host.log()
    );
    u32::try_from(id.unwrap()).unwrap()
}

#[test]
fn connect_moves_a_live_h264_window_to_another_session() {
    if !tools_present("xfreerdp gfx interop") {
        return;
    }
    let host = Host::start(&[ALICE, BOB], "");
    let mut alice = open(&host, ALICE, &["/gfx:avc420"], "connect-alice");
    paint(&alice, &host, GREEN);
    let a = active_session_of(&host, ALICE.0);
    let bob = open(&host, BOB, &["/gfx:avc420"], "connect-bob");
    paint(&bob, &host, MAGENTA);
    let b = active_session_of(&host, BOB.0);
    assert_eq!(count(&host, EGFX_LINE), 2, "both on H.264; host log:\n{}", host.log());

    // tscon A /dest:B: bob's window shows alice's green session without reconnecting, still
    // over H.264 (a new surface, the other session's stream).
    let (code, _, err) = host.control(&["connect", &a.to_string(), "--dest", &b.to_string()]);
    assert_eq!(code, 0, "connect failed: {err}\nhost log:\n{}", host.log());
    assert!(alice.wait_exit(WAIT).is_some(), "alice's own window was replaced:\n{}", alice.log());
    assert!(
        bob.wait_shot("moved", |s| s.share_near(GREEN.1, TOLERANCE) > 0.6),
        "bob's window shows alice's green session; host log:\n{}\nxfreerdp:\n{}",
        host.log(),
        bob.log()
    );
    assert!(host.log().contains("terminal switches session"), "switched live:\n{}", host.log());
    assert_eq!(count(&host, EGFX_LINE), 2, "no fallback on the way; host log:\n{}", host.log());
    // It types into alice's shell, and the echo shows.
    let (command, token) = shell_token();
    bob.type_line(command.trim_end());
    assert!(bob.wait_text(&token, "typed-moved"), "the echo shows in the moved window; host log:\n{}", host.log());
}
