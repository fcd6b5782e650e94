//! The client against a real RDP server: FreeRDP's shadow server (Debian `freerdp2-shadow-x11`)
//! mirroring an Xvfb display. Checks decoded pixels, that input reaches the X server, the PNG,
//! and the rdhost-shot tool.
//!
//! Needs Xvfb, freerdp-shadow-cli, xsetroot, xdotool and xterm. When one is missing the tests
//! print why and pass, unless `CI` is set: then they fail, so CI cannot silently skip them.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdhost_client::{Button, Client, ClientConfig, Codec, Security};

/// A child process killed (and reaped) when dropped, so no test leaves servers behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// All tools present, or `None` after saying which is missing (a failure under CI).
fn tools(names: &[&str]) -> Option<()> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| tool(n).is_none())
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    let msg = format!(
        "missing tools: {} (Debian: xvfb freerdp2-shadow-x11 x11-xserver-utils xdotool xterm)",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The shared test X server (xprobe's: it lets Xvfb choose a free display, so parallel tests
/// never land on one display), started at the size these tests expect.
struct Xvfb(rdhost_xprobe::xvfb::Xvfb);

impl Xvfb {
    fn start() -> Xvfb {
        Xvfb(rdhost_xprobe::xvfb::Xvfb::start(1024, 768).expect("start Xvfb"))
    }

    /// Runs an X client against this server.
    fn run(&self, cmd: &str, args: &[&str]) -> Output {
        Command::new(cmd)
            .args(args)
            .envs(self.0.env())
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    fn set_background(&self, colour: &str) {
        let out = self.run("xsetroot", &["-solid", colour]);
        assert!(
            out.status.success(),
            "xsetroot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// freerdp-shadow-cli mirroring `x` on loopback; by default TLS security and no authentication.
struct Shadow {
    addr: SocketAddr,
    _proc: Killed,
}

impl Shadow {
    fn start(x: &Xvfb) -> Shadow {
        Shadow::start_with(x, &["-auth", "/sec:tls"])
    }

    fn start_with(x: &Xvfb, security: &[&str]) -> Shadow {
        // The first start after Xvfb comes up sometimes fails to open the display
        // ("unsupported X11 server color depth: 0"); one retry has always been enough.
        for attempt in 1..=3 {
            let port = free_port();
            let mut proc = Killed(
                Command::new("freerdp-shadow-cli")
                    .args([&format!("/port:{port}"), "/bind-address:127.0.0.1"])
                    .args(security)
                    .envs(x.0.env())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start freerdp-shadow-cli"),
            );
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if proc.0.try_wait().expect("poll shadow").is_some() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Shadow { addr, _proc: proc };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("freerdp-shadow-cli attempt {attempt} did not come up; retrying");
        }
        panic!("freerdp-shadow-cli did not start");
    }
}

/// `RUST_LOG=rdhost_client=debug,ironrdp_session=trace` shows the protocol when a test fails.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(addr: SocketAddr) -> ClientConfig {
    init_logging();
    ClientConfig {
        security: Security::Tls,
        connect_timeout: Duration::from_secs(15),
        ..ClientConfig::new(addr, "tester", "any-password")
    }
}

/// RemoteFX is lossy: allow a little error per channel.
fn close_to(px: [u8; 3], want: [u8; 3]) -> bool {
    px.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= 24)
}

fn fraction_close_to(client: &Client, want: [u8; 3]) -> f64 {
    let px = client
        .rgba()
        .chunks_exact(4)
        .filter(|p| close_to([p[0], p[1], p[2]], want))
        .count();
    px as f64 / (client.rgba().len() / 4) as f64
}

fn read_png(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rdhost-client-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes a test's files, unless `KEEP_ARTIFACTS` is set (to look at the PNGs).
fn cleanup(dir: PathBuf) {
    if std::env::var_os("KEEP_ARTIFACTS").is_some() {
        eprintln!("kept {}", dir.display());
    } else {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decodes_the_shadowed_desktop_follows_changes_and_sends_input() {
    if tools(&["Xvfb", "freerdp-shadow-cli", "xsetroot", "xdotool"]).is_none() {
        return;
    }
    let x = Xvfb::start();
    let shadow = Shadow::start(&x);

    let mut client = rdhost_client::connect(config(shadow.addr))
        .await
        .expect("connect");
    // The shadow server shows the X screen at its own size, whatever we asked for.
    assert_eq!((client.width(), client.height()), (1024, 768));
    // The X11 shadow only sends what X reports as damaged (its first frame is an empty
    // surface), so paint after connecting.
    client.pump_for(Duration::from_millis(500)).await.unwrap();
    x.set_background("#ff0000");

    let red = client
        .pump_until(Duration::from_secs(15), |c| {
            fraction_close_to(c, RED) > 0.99
        })
        .await
        .expect("pump");
    assert!(
        red,
        "screen never turned red; got {:?} at the centre",
        client.pixel(512, 384)
    );
    assert!(client.frames_received() > 0);
    assert!(
        client.bytes_received() > 10_000,
        "a whole screen arrived in {} bytes?",
        client.bytes_received()
    );
    let codecs = client.codecs_seen();
    eprintln!("codecs from freerdp-shadow: {codecs:?}");
    assert!(
        !codecs.is_empty(),
        "graphics arrived but no codec was recognised"
    );
    assert!(
        codecs
            .iter()
            .all(|(c, _)| !matches!(c, Codec::SurfaceOther(_))),
        "server used a codec we did not advertise: {codecs:?}"
    );

    // A change on the X side reaches the framebuffer.
    x.set_background("#0000ff");
    let blue = client
        .pump_until(Duration::from_secs(15), |c| {
            fraction_close_to(c, BLUE) > 0.99
        })
        .await
        .unwrap();
    assert!(
        blue,
        "screen never turned blue; centre is {:?}",
        client.pixel(512, 384)
    );

    // FreeRDP 2.11's shadow server opens drdynvc but not the display control channel.
    assert!(matches!(
        client.request_resize(800, 600).await,
        Err(rdhost_client::SessionError::Unavailable(_))
    ));
    let frames = client.frames_received();
    client.request_refresh().await.expect("refresh");
    let refreshed = client
        .pump_until(Duration::from_secs(10), |c| c.frames_received() > frames)
        .await;
    assert!(refreshed.unwrap(), "no update after Refresh Rect");

    // Input reaches the X server: the pointer moves where we put it.
    client.mouse_move(321, 123).await.expect("mouse move");
    client.button(Button::Left, true).await.unwrap();
    client.button(Button::Left, false).await.unwrap();
    client.key(0x2A, false, true).await.expect("shift down");
    client.key(0x2A, false, false).await.expect("shift up");
    client.pump_for(Duration::from_millis(300)).await.unwrap();
    let mut location = String::new();
    let moved = client
        .pump_until(Duration::from_secs(5), |_| {
            location =
                String::from_utf8_lossy(&x.run("xdotool", &["getmouselocation"]).stdout)
                    .into_owned();
            location.starts_with("x:321 y:123 ")
        })
        .await
        .unwrap();
    assert!(moved, "pointer is at {location:?}, not 321,123");

    let dir = scratch_dir("shot");
    let png_path = dir.join("screen.png");
    client.save_png(&png_path).unwrap();
    let (w, h, colour, data) = read_png(&png_path);
    assert_eq!((w, h, colour), (1024, 768, png::ColorType::Rgb));
    let centre = ((384 * 1024 + 512) * 3) as usize;
    assert!(close_to(
        [data[centre], data[centre + 1], data[centre + 2]],
        BLUE
    ));

    assert!(!client.closed());
    client.disconnect().await.expect("disconnect");
    cleanup(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_arrives_as_the_same_characters() {
    if tools(&["Xvfb", "freerdp-shadow-cli", "xsetroot", "xterm"]).is_none() {
        return;
    }
    let x = Xvfb::start();
    let dir = scratch_dir("typed");
    let typed = dir.join("typed.txt");
    // Without a window manager, keyboard focus follows the pointer: a full-screen xterm
    // that copies its input to a file receives whatever we type.
    let _xterm = Killed(
        Command::new("xterm")
            .args([
                "-geometry",
                "200x80+0+0",
                "-e",
                "sh",
                "-c",
                &format!("cat > {}", typed.display()),
            ])
            .envs(x.0.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start xterm"),
    );
    wait_for("xterm to start cat", Duration::from_secs(10), || {
        typed.exists()
    });
    let shadow = Shadow::start(&x);

    let mut client = rdhost_client::connect(config(shadow.addr))
        .await
        .expect("connect");
    client
        .pump_until_idle(Duration::from_millis(300), Duration::from_secs(10))
        .await
        .unwrap();
    client.mouse_move(400, 300).await.unwrap();
    // Every shifted and unshifted US key, so a wrong entry in the table shows up here.
    let text =
        "Hello, RDP! `1234567890-=[]\\;',./ ~!@#$%^&*()_+{}|:\"<>? qwertyuiopasdfghjklzxcvbnm\n";
    client.type_text(text).await.unwrap();
    let mut got = String::new();
    let arrived = client
        .pump_until(Duration::from_secs(10), |_| {
            got = std::fs::read_to_string(&typed).unwrap_or_default();
            got.ends_with('\n')
        })
        .await
        .unwrap();
    assert!(arrived, "xterm received {got:?}");
    assert_eq!(got, text);
    // The echoed line is on screen too: the top-left of the xterm holds dark glyphs on white.
    client
        .pump_until_idle(Duration::from_millis(300), Duration::from_secs(5))
        .await
        .unwrap();
    client.save_png(&dir.join("xterm.png")).unwrap();
    let (mut dark, mut light) = (0, 0);
    for y in 0..40 {
        for x in 0..400 {
            let [r, g, b] = client.pixel(x, y).unwrap();
            let luma = u32::from(r) + u32::from(g) + u32::from(b);
            if luma < 150 {
                dark += 1;
            } else if luma > 600 {
                light += 1;
            }
        }
    }
    assert!(
        dark > 200 && light > 2000,
        "no text on screen? dark {dark}, light {light}"
    );
    client.disconnect().await.unwrap();
    cleanup(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdhost_shot_saves_a_png_and_fails_loudly() {
    if tools(&["Xvfb", "freerdp-shadow-cli", "xsetroot"]).is_none() {
        return;
    }
    let x = Xvfb::start();
    let shadow = Shadow::start(&x);
    // The shadow's picture of the screen is only current once X has reported damage while a
    // client was watching; this client makes sure of that, and stays on while the tool
    // connects as a second client.
    let mut watcher = rdhost_client::connect(config(shadow.addr))
        .await
        .expect("connect");
    watcher.pump_for(Duration::from_millis(500)).await.unwrap();
    x.set_background("#00ff00");
    let green = watcher
        .pump_until(Duration::from_secs(15), |c| {
            fraction_close_to(c, [0, 255, 0]) > 0.99
        })
        .await;
    assert!(green.unwrap(), "the watcher never saw green");

    let dir = scratch_dir("rdhost-shot");
    let out = dir.join("shot.png");
    let shot = tokio::process::Command::new(env!("CARGO_BIN_EXE_rdhost-shot"))
        .args([
            &shadow.addr.to_string(),
            "tester",
            out.to_str().unwrap(),
            "--sec",
            "tls",
            "--timeout",
            "20",
        ])
        .env("RDHOST_PASSWORD", "any-password")
        .output();
    // Keep serving the watcher's connection while the tool runs.
    let (ok, _) = tokio::join!(shot, watcher.pump_for(Duration::from_secs(3)));
    let ok = ok.unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "rdhost-shot failed: {stdout} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("saved"), "{stdout}");
    let (w, h, _, data) = read_png(&out);
    assert_eq!((w, h), (1024, 768));
    let green = data
        .chunks_exact(3)
        .filter(|p| close_to([p[0], p[1], p[2]], [0, 255, 0]))
        .count();
    assert!(
        green as f64 > 0.99 * f64::from(w * h),
        "the PNG is not the green screen"
    );

    // Nothing listens on this port: a connect failure, non-zero, and no file.
    let missing = dir.join("never.png");
    let failed = Command::new(env!("CARGO_BIN_EXE_rdhost-shot"))
        .args([
            &format!("127.0.0.1:{}", free_port()),
            "tester",
            missing.to_str().unwrap(),
            "--timeout",
            "5",
        ])
        .env("RDHOST_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(
        failed.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(!missing.exists());
    watcher.disconnect().await.unwrap();
    cleanup(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nla_logs_on_with_the_right_password_and_reports_a_wrong_one() {
    if tools(&["Xvfb", "freerdp-shadow-cli", "xsetroot", "winpr-hash"]).is_none() {
        return;
    }
    // NLA needs the server to know the NT hash: FreeRDP reads it from a SAM-format file.
    let dir = scratch_dir("nla");
    let sam = dir.join("sam");
    let line = Command::new("winpr-hash")
        .args(["-u", "alice", "-p", "s3cret!", "-f", "sam"])
        .output()
        .unwrap();
    assert!(line.status.success());
    std::fs::write(&sam, &line.stdout).unwrap();
    let x = Xvfb::start();
    let shadow = Shadow::start_with(
        &x,
        &["-auth", "/sec:nla", &format!("/sam-file:{}", sam.display())],
    );

    let nla = |password: &str, security| ClientConfig {
        security,
        connect_timeout: Duration::from_secs(15),
        ..ClientConfig::new(shadow.addr, "alice", password)
    };
    init_logging();
    let err = rdhost_client::connect(nla("wrong", Security::Nla))
        .await
        .err()
        .expect("wrong password must fail");
    assert!(
        matches!(
            err,
            rdhost_client::ConnectError::AuthenticationFailed { .. }
        ),
        "{err:?}"
    );
    eprintln!("wrong NLA password: {err}");
    // TLS only is not what this server accepts: a negotiation failure, not an auth failure.
    let err = rdhost_client::connect(nla("s3cret!", Security::Tls))
        .await
        .err()
        .expect("TLS-only must fail");
    assert!(
        matches!(err, rdhost_client::ConnectError::SecurityNegotiation(_)),
        "{err:?}"
    );

    for security in [Security::Nla, Security::Negotiate] {
        let mut client = rdhost_client::connect(nla("s3cret!", security))
            .await
            .expect("NLA logon");
        client.pump_for(Duration::from_millis(300)).await.unwrap();
        assert!(!client.closed());
        client.disconnect().await.unwrap();
    }
    cleanup(dir);
}
