//! The interop matrix: every stock client we can run here logs on to a real host, types into the
//! session, sees the shell's echo, vanishes, and logs on again to the same session, which still
//! shows the echo. Each client runs on a private Xvfb; what its window shows is read back from
//! screenshots with the terminal desktop's own font.
//!
//! Each case prints one `matrix:` line (client, version, security, codec) for the README.
//! Skips (with a note) when a tool is missing, unless `CI` is set: then it fails and names the
//! package to install.

mod common;

use common::xfreerdp::{Stock, StockClient, WAIT, stock_tools_present, wait_until};
use common::{Host, shell_token};

const USER: (&str, &str) = ("alice", "alice-pw-1");

/// How the host is set up for a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// No NT hashes stored: the host offers TLS only.
    Tls,
    /// NT hashes stored: the host offers NLA (and TLS to clients that do not ask for NLA).
    Nla,
}

/// A second shell command and its output, unlike `previous`: the sum is only on screen when the
/// shell evaluated it.
fn shell_token_after(previous: &str) -> (String, String) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let (a, b) = (std::process::id() % 9000 + 1000, nanos % 9000 + 1000);
    let token = format!("z{}q", a + b);
    assert_ne!(token, previous);
    (format!("echo z$(({a}+{b}))q\n"), token)
}

/// What the host logged of one connection: (security, bits per pixel, codec).
fn connections(log: &str) -> Vec<(String, String, String)> {
    let field = |line: &str, name: &str| -> String {
        let Some(at) = line.find(&format!(" {name}=")) else { return String::new() };
        line[at + name.len() + 2..].split_whitespace().next().unwrap_or("").trim_matches('"').to_owned()
    };
    log.lines()
        .filter(|l| l.contains("client connected"))
        .map(|l| (field(l, "security"), field(l, "bpp"), field(l, "codec")))
        .collect()
}

/// Session ids of the host's "terminal N shows session S" lines, with whether each was a
/// reconnect.
fn shown_sessions(log: &str) -> Vec<(String, bool)> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("shows session ")? + "shows session ".len()..];
            let session = rest.split_whitespace().next()?.to_owned();
            Some((session, line.contains("kind=Reconnect")))
        })
        .collect()
}

/// Log on with `stock`, type, see the echo; vanish; log on again and find the echo in the same
/// session. Every connection must have used `security` and `codec` at `bpp` bits per pixel.
/// Returns the host's log (None: skipped, a tool is missing).
fn logs_on_types_and_reconnects(name: &str, stock: Stock, security: Security, bpp: u16, codec: &str) -> Option<String> {
    logs_on_and_reconnects_with(name, stock.clone(), stock, security, bpp, codec)
}

/// [`logs_on_types_and_reconnects`], logging on again with `again` (another size, say).
fn logs_on_and_reconnects_with(name: &str, stock: Stock, again: Stock, security: Security, bpp: u16, codec: &str) -> Option<String> {
    if !stock_tools_present(&format!("interop matrix: {name}"), &stock) {
        return None;
    }
    let host = match security {
        Security::Tls => Host::start(&[USER], ""),
        Security::Nla => Host::start_nla(&[USER], ""),
    };
    let context = |client: &StockClient| format!("host log:\n{}\n{} output:\n{}", host.log(), client.label(), client.log());

    let mut first = StockClient::open(&stock, &host, USER, &format!("{name}-first"));
    assert!(first.wait_any(&["$", "#"], "prompt").is_some(), "{name}: a shell prompt shows; {}", context(&first));
    let (command, token) = shell_token();
    first.type_line(command.trim_end());
    assert!(first.wait_text(&token, "typed"), "{name}: the shell's output {token} shows; {}", context(&first));

    // The client vanishes without a word; the session stays.
    first.kill();
    let mut second = StockClient::open(&again, &host, USER, &format!("{name}-second"));
    assert!(second.wait_text(&token, "reconnected"), "{name}: the earlier output {token} shows again; {}", context(&second));
    // And it takes input (after a resize, if the host made one).
    let (command, token) = shell_token_after(&token);
    second.type_line(command.trim_end());
    assert!(second.wait_text(&token, "typed-again"), "{name}: the shell's output {token} shows; {}", context(&second));
    assert!(wait_until(WAIT, || shown_sessions(&host.log()).len() >= 2), "{name}: host logs the second terminal; {}", context(&second));
    let shown = shown_sessions(&host.log());
    assert_eq!(shown.len(), 2, "{name}: two logons; {}", context(&second));
    assert!(!shown[0].1, "{name}: the first logon is a new session; {}", context(&second));
    assert_eq!(shown[1], (shown[0].0.clone(), true), "{name}: the second shows the same session; {}", context(&second));
    assert!(second.exited().is_none(), "{name}: the second client still runs; {}", context(&second));

    let expected = (if security == Security::Nla && !name.starts_with("rdesktop") { "nla" } else { "tls" }).to_owned();
    let seen = connections(&host.log());
    assert_eq!(seen.len(), 2, "{name}: two connections; {}", context(&second));
    for connection in &seen {
        assert_eq!(connection, &(expected.clone(), bpp.to_string(), codec.to_owned()), "{name}: security, depth and codec; {}", context(&second));
    }
    let shown_codec = if egfx_terminals(&host.log()) > 0 { "avc420 over EGFX".to_owned() } else { format!("{bpp} bpp {codec}") };
    eprintln!("matrix: {name} | {} | {expected} | {shown_codec} | works", second.version());
    Some(host.log())
}

/// How many terminals switched to H.264 over the graphics pipeline (the host logs each once).
fn egfx_terminals(log: &str) -> usize {
    log.lines().filter(|l| l.contains("codec=\"avc420 over EGFX\"")).count()
}

// --- xfreerdp (FreeRDP 2.11) -----------------------------------------------------------------

#[test]
fn xfreerdp_default() {
    // FreeRDP 2 offers RemoteFX by default.
    logs_on_types_and_reconnects("xfreerdp", Stock::xfreerdp(&["/sec:tls"]), Security::Tls, 32, "remotefx");
}

#[test]
fn xfreerdp_gfx_avc420_gets_h264() {
    // /gfx:avc420 advertises the graphics pipeline with H.264: both terminals switch to AVC420
    // over EGFX. Their fast-path codec (until then) is planar: with /gfx FreeRDP offers no
    // RemoteFX for Bitmap Updates.
    let Some(log) = logs_on_types_and_reconnects("xfreerdp-gfx-avc420", Stock::xfreerdp(&["/sec:tls", "/gfx:avc420"]), Security::Tls, 32, "planar") else {
        return;
    };
    assert_eq!(egfx_terminals(&log), 2, "both terminals on H.264; host log:\n{log}");
}

#[test]
fn xfreerdp_gfx_without_h264_falls_back_to_bitmap_updates() {
    // FreeRDP 2.11's /gfx advertises the graphics pipeline with AVC_DISABLED (as /gfx:rfx does):
    // the terminals stay on planar bitmap updates.
    let Some(log) = logs_on_types_and_reconnects("xfreerdp-gfx", Stock::xfreerdp(&["/sec:tls", "/gfx"]), Security::Tls, 32, "planar") else {
        return;
    };
    assert_eq!(egfx_terminals(&log), 0, "no H.264; host log:\n{log}");
    assert!(log.contains("graphics pipeline without AVC420"), "host log:\n{log}");
}

#[test]
fn xfreerdp_16_bpp() {
    logs_on_types_and_reconnects("xfreerdp-bpp16", Stock::xfreerdp(&["/sec:tls", "/bpp:16"]), Security::Tls, 16, "interleaved16");
}

#[test]
fn xfreerdp_24_bpp() {
    // /bpp:24 does not list 32 bpp among the depths it supports.
    logs_on_types_and_reconnects("xfreerdp-bpp24", Stock::xfreerdp(&["/sec:tls", "/bpp:24"]), Security::Tls, 24, "interleaved24");
}

#[test]
fn xfreerdp_remotefx() {
    logs_on_types_and_reconnects("xfreerdp-rfx", Stock::xfreerdp(&["/sec:tls", "/rfx"]), Security::Tls, 32, "remotefx");
}

#[test]
fn xfreerdp_nscodec_gets_remotefx() {
    // The host encodes no NSCodec; xfreerdp /nsc still offers RemoteFX, and gets it.
    logs_on_types_and_reconnects("xfreerdp-nsc", Stock::xfreerdp(&["/sec:tls", "/nsc"]), Security::Tls, 32, "remotefx");
}

#[test]
fn xfreerdp_nla() {
    logs_on_types_and_reconnects("xfreerdp-nla", Stock::xfreerdp(&["/sec:nla"]), Security::Nla, 32, "remotefx");
}

// --- rdesktop 1.9 ----------------------------------------------------------------------------

#[test]
fn rdesktop() {
    // No Surface Commands: planar bitmaps, with the alpha plane rdesktop needs.
    logs_on_types_and_reconnects("rdesktop", Stock::rdesktop(&[]), Security::Tls, 32, "planar+alpha");
}

#[test]
fn rdesktop_16_bpp() {
    logs_on_types_and_reconnects("rdesktop-bpp16", Stock::rdesktop(&["-a", "16"]), Security::Tls, 16, "interleaved16");
}

#[test]
fn rdesktop_16_bpp_reconnects_at_another_size() {
    // The session is 1024x768, the second client 800x600: the host resizes the client's screen
    // right away (deactivation-reactivation), and the new Demand Active must say 16 bpp again.
    // (Told 32, rdesktop draws the 16-bit bitmaps as 32-bit ones and dies.)
    logs_on_and_reconnects_with(
        "rdesktop-bpp16-resized",
        Stock::rdesktop(&["-a", "16"]),
        Stock::rdesktop(&["-a", "16", "-g", "800x600"]),
        Security::Tls,
        16,
        "interleaved16",
    );
}

#[test]
fn rdesktop_against_a_host_offering_nla_falls_back_to_tls() {
    // rdesktop's CredSSP speaks Kerberos only: it fails, and rdesktop retries with TLS alone.
    logs_on_types_and_reconnects("rdesktop-nla-host", Stock::rdesktop(&[]), Security::Nla, 32, "planar+alpha");
}

// --- Remmina (RDP plugin, FreeRDP 2 inside) ----------------------------------------------------

#[test]
fn remmina_tls() {
    logs_on_types_and_reconnects("remmina", Stock::remmina(&["security=tls", "colordepth=32"]), Security::Tls, 32, "planar");
}

#[test]
fn remmina_nla() {
    logs_on_types_and_reconnects("remmina-nla", Stock::remmina(&["security=nla", "colordepth=32"]), Security::Nla, 32, "planar");
}
