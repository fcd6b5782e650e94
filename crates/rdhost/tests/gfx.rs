//! The graphics pipeline (MS-RDPEGFX) between a real `rdhost serve` and our client: a client
//! offering GFX with AVC420 gets H.264 frames, sees the session as a fast-path client sees it
//! (within a lossy codec's tolerance), and sees what it types; resizing resets the pipeline at
//! the new size; a client offering GFX without AVC, or no GFX, falls back and still works.

mod common;

use std::time::Duration;

use common::{Host, on_screen, shell_token};
use rdhost_client::{Client, Codec, Gfx};

const WAIT: Duration = Duration::from_secs(30);

fn config(host: &Host, user: &str, password: &str, gfx: Gfx) -> rdhost_client::ClientConfig {
    let mut cfg = host.client(user, password);
    cfg.gfx = gfx;
    cfg
}

fn prompt(c: &Client) -> bool {
    on_screen(c, "$") || on_screen(c, "#")
}

fn h264(c: &Client) -> u64 {
    c.codecs_seen()
        .iter()
        .filter(|(codec, _)| matches!(codec, Codec::GfxAvc420 | Codec::GfxAvc444))
        .map(|(_, n)| n)
        .sum()
}

/// Per pixel, the largest channel difference between two framebuffers of the same size: the
/// mean of it, and the share of pixels off by more than `far`.
fn compare(a: &[u8], b: &[u8], far: u8) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut sum, mut off) = (0u64, 0u64);
    let n = a.len() / 4;
    for (p, q) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        let d = (0..3).map(|c| p[c].abs_diff(q[c])).max().unwrap();
        sum += u64::from(d);
        off += u64::from(d > far);
    }
    (sum as f64 / n as f64, off as f64 / n as f64)
}

fn save(client: &Client, name: &str) -> String {
    let path = common::artifacts_dir().join(name);
    match client.save_png(&path) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(could not save {}: {e})", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avc420_client_gets_h264_and_sees_the_session_like_a_fast_path_client() {
    let host = Host::start(&[("gina", "gina-pw-1")], "");

    // The session as a fast-path client sees it (the host's default codec for ours: RemoteFX).
    let mut plain = rdhost_client::connect(config(&host, "gina", "gina-pw-1", Gfx::Off)).await.expect("logs in");
    assert!(plain.pump_until(WAIT, prompt).await.unwrap(), "a prompt over fast-path");
    let (command, token) = shell_token();
    plain.type_text(&command).await.unwrap();
    assert!(plain.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap(), "typed text over fast-path");
    plain.pump_until_idle(Duration::from_millis(500), WAIT).await.unwrap();
    let reference = plain.rgba().to_vec();
    let counters = plain.gfx_counters();
    assert_eq!((counters.confirmed, counters.frames, counters.bytes), (None, 0, 0), "no GFX when not offered");
    assert!(plain.codecs_seen().iter().all(|(c, _)| !format!("{c:?}").starts_with("Gfx")));
    plain.disconnect().await.unwrap();

    // The same session again, offering GFX with AVC420.
    let mut gfx = rdhost_client::connect(config(&host, "gina", "gina-pw-1", Gfx::Avc420)).await.expect("logs in again");
    let decoded = gfx
        .pump_until(WAIT, |c| c.gfx_counters().h264_pictures > 0 && on_screen(c, &token))
        .await
        .unwrap();
    let counters = gfx.gfx_counters();
    assert!(
        decoded,
        "no H.264 frame with the session's text: {counters:?}, codecs {:?}; picture {}; host log:\n{}",
        gfx.codecs_seen(),
        save(&gfx, "gfx-avc420.png"),
        host.log()
    );
    eprintln!("GFX client after logon: {counters:?}; codecs {:?}", gfx.codecs_seen());
    let confirmed = counters.confirmed.expect("the host confirmed a capability set");
    assert!(confirmed.avc420, "{confirmed:?}");
    assert!(counters.frames > 0 && counters.bytes > 0, "{counters:?}");
    assert_eq!(counters.h264_errors, 0, "{counters:?}");
    assert!(h264(&gfx) > 0, "{:?}", gfx.codecs_seen());
    gfx.pump_until_idle(Duration::from_millis(500), WAIT).await.unwrap();
    let (mean, far) = compare(gfx.rgba(), &reference, 48);
    eprintln!("GFX vs fast-path picture: mean difference {mean:.2}, {:.3}% of pixels off by more than 48", far * 100.0);
    assert!(
        mean < 4.0 && far < 0.01,
        "GFX picture differs from the fast-path one: mean {mean:.2}, {:.2}% of pixels far off ({} vs the reference)",
        far * 100.0,
        save(&gfx, "gfx-avc420-compare.png"),
    );

    // Typing shows through H.264 too.
    let (command, token) = shell_token();
    let before = gfx.gfx_counters().frames;
    // The first screen may have come by fast-path, before the pipeline opened.
    let fast_path_before: Vec<_> = gfx.codecs_seen().into_iter().filter(|(c, _)| !format!("{c:?}").starts_with("Gfx")).collect();
    gfx.type_text(&command).await.unwrap();
    assert!(
        gfx.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap(),
        "typed text over GFX: {}",
        save(&gfx, "gfx-avc420-typed.png")
    );
    // Over the pipeline, in whichever of its codecs the host chose for a few glyphs.
    assert!(gfx.gfx_counters().frames > before, "the echo came over GFX: {:?}", gfx.codecs_seen());
    let fast_path: Vec<_> = gfx.codecs_seen().into_iter().filter(|(c, _)| !format!("{c:?}").starts_with("Gfx")).collect();
    assert_eq!(fast_path, fast_path_before, "nothing by fast-path once the pipeline runs: {:?}", gfx.codecs_seen());
    gfx.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizing_a_gfx_session_resets_the_pipeline_at_the_new_size() {
    let host = Host::start(&[("hal", "hal-pw-1")], "");
    let mut client = rdhost_client::connect(config(&host, "hal", "hal-pw-1", Gfx::Avc420)).await.expect("logs in");
    assert!(client.pump_until(WAIT, |c| prompt(c) && c.gfx_counters().h264_pictures > 0).await.unwrap());
    let (command, token) = shell_token();
    client.type_text(&command).await.unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap());
    let resets = client.gfx_counters().resets;
    let deadline = std::time::Instant::now() + WAIT;
    while !client.display_control_ready() {
        assert!(std::time::Instant::now() < deadline, "the host never opened display control");
        client.pump_for(Duration::from_millis(100)).await.unwrap();
    }
    client.request_resize(800, 600).await.unwrap();
    let redrawn = client
        .pump_until(WAIT, |c| c.width() == 800 && c.height() == 600 && on_screen(c, &token))
        .await
        .unwrap();
    let counters = client.gfx_counters();
    assert!(
        redrawn,
        "not redrawn at 800x600 (now {}x{}): {counters:?}; {}",
        client.width(),
        client.height(),
        save(&client, "gfx-resized.png")
    );
    assert!(counters.resets > resets, "a ResetGraphics for the new size: {counters:?}");
    assert_eq!(counters.output_size, Some((800, 600)));
    client.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_avc_or_without_gfx_the_client_falls_back_and_works() {
    let host = Host::start(&[("ivy", "ivy-pw-1")], "");
    for gfx in [Gfx::NoAvc, Gfx::Off] {
        let mut client = rdhost_client::connect(config(&host, "ivy", "ivy-pw-1", gfx)).await.expect("logs in");
        assert!(client.pump_until(WAIT, prompt).await.unwrap(), "{gfx:?}: a prompt");
        let (command, token) = shell_token();
        client.type_text(&command).await.unwrap();
        assert!(
            client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap(),
            "{gfx:?}: typed text shows: {}",
            save(&client, &format!("gfx-fallback-{gfx:?}.png"))
        );
        let counters = client.gfx_counters();
        assert_eq!(counters.h264_pictures, 0, "{gfx:?}: no H.264 when it was not offered: {counters:?}");
        assert_eq!(h264(&client), 0, "{gfx:?}: {:?}", client.codecs_seen());
        if let Some(confirmed) = counters.confirmed {
            assert!(gfx != Gfx::Off, "a pipeline confirmed although none was offered");
            assert!(!confirmed.avc420 && !confirmed.avc444, "{confirmed:?}");
        }
        client.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdhost_view_with_gfx_snapshots_a_session_sent_as_h264() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let host = Host::start(&[("jo", "jo-pw-1")], "");
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let (target, path) = (host.addr.to_string(), shot.to_str().unwrap().to_owned());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(common::BIN)
            .args(["view", &target, "--user", "jo", "--password", "-", "--gfx", "--snapshot", &path, "--after-ms", "1500"])
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rdhost view");
        child.stdin.take().unwrap().write_all(b"jo-pw-1\n").unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}\nhost log:\n{}", String::from_utf8_lossy(&out.stderr), host.log());
    assert!(host.wait_log("avc420 over EGFX", WAIT), "the host chose H.264 for the viewer:\n{}", host.log());
    let mut reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap())).read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (1024, 768, png::ColorType::Rgb));
    let rgba: Vec<u8> = rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 0xFF]).collect();
    let prompt = ["$", "#"].iter().any(|t| rdhost_desktop::terminal::find_text(&rgba, 1024, 768, 16.0, t).is_some());
    assert!(prompt, "the session's prompt is in the snapshot");
}
