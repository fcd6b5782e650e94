//! Desktop Sharing with a real viewer: FreeRDP's `xfreerdp` 2.11 in Remote Assistance mode
//! (`xfreerdp inv.msrcIncident /assistance:PW`), each on a private Xvfb, joining a real
//! `rdhost share start` on loopback that shares a shell in the terminal desktop. The sharer is
//! driven with `rdhost share …`; what an xfreerdp window shows is read back from a screenshot of
//! it with the terminal desktop's own font, and refusals are read from xfreerdp's exit code.
//!
//! Every shared shell first prints a token (`x<product>y`, computed by the shell), so a window
//! that shows the token shows the shared desktop.
//!
//! Skips (with a note) when a tool is missing, unless `CI` is set: then it fails and names the
//! package to install.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::sharer::Sharer;
use common::xfreerdp::{HEIGHT, Proc, WAIT, WIDTH, Xfreerdp, tools_present, tools_present_with, wait_until};

const PASSWORD: &str = "Sh4re-pw";

/// xfreerdp's exit code is the Set Error Info code for 0x1..0xC (spec §5): the sharer refuses
/// wrong credentials (unknown ticket, wrong password) with ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES
/// and valid credentials it cannot honour now (revoked, attendee limit) with
/// ERRINFO_SERVER_DENIED_CONNECTION.
const XF_EXIT_INSUFFICIENT_PRIVILEGES: i32 = 0x9;
const XF_EXIT_DENIED_CONNECTION: i32 = 0x7;

/// How long a window is watched for something that must *not* show up. The same window shows
/// the shell within about a second once it is allowed to.
const QUIET: Duration = Duration::from_millis(2500);

/// A shell command line that prints a token and then runs an interactive shell, and the token.
/// The token only appears when the shell evaluated `$((a*b))`.
fn marked_shell(seed: u32) -> (String, String) {
    let (a, b) = (1000 + std::process::id() % 9000, 17 + seed * 11);
    (format!("echo x$(({a}*{b}))y; exec sh"), format!("x{}y", a * b))
}

/// A command to type into the shared shell, and the output it gives (not on the typed line).
fn typed_token(seed: u32) -> (String, String) {
    let (a, b) = (2000 + std::process::id() % 7000, 23 + seed * 7);
    (format!("echo q$(({a}*{b}))z"), format!("q{}z", a * b))
}

/// `xfreerdp <the invitation file> /assistance:<password> /sec:tls /cert:ignore /u:<name> …`:
/// the file must be the first argument (spec §3.5), TLS is pinned so a refusal is not retried
/// with Standard RDP Security (§3.6).
fn attendee(sharer: &Sharer, password: &str, name: &str, extra: &[&str], label: &str) -> Xfreerdp {
    attendee_with(&sharer.invitation_file(), password, name, extra, label)
}

/// [`attendee`] with the invitation file `invitation`.
fn attendee_with(invitation: &Path, password: &str, name: &str, extra: &[&str], label: &str) -> Xfreerdp {
    let mut args = vec![
        invitation.display().to_string(),
        format!("/assistance:{password}"),
        "/sec:tls".to_owned(),
        "/cert:ignore".to_owned(),
        format!("/u:{name}"),
        format!("/size:{WIDTH}x{HEIGHT}"),
        "/kbd:0x409".to_owned(),
        "-grab-keyboard".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Xfreerdp::start_args(&args, label)
}

/// The sharer's log, for failure messages.
fn log_of(sharer: &Sharer) -> String {
    format!("sharer log:\n{}", sharer.log())
}

/// The attendee named `name`, once the sharer lists it (panics otherwise).
fn listed(sharer: &Sharer, name: &str, client: &Xfreerdp) -> serde_json::Value {
    sharer.wait_attendee(WAIT, |a| a["name"] == name).unwrap_or_else(|| {
        panic!("the sharer lists {name}: {:?}\n{}\nxfreerdp:\n{}", sharer.attendees(), log_of(sharer), client.log())
    })
}

fn id_of(attendee: &serde_json::Value) -> String {
    attendee["id"].as_u64().unwrap_or_else(|| panic!("an attendee id: {attendee}")).to_string()
}

/// The exit status of a client the sharer refuses (panics when it does not give up).
fn refused(client: &mut Xfreerdp, sharer: &Sharer) -> ExitStatus {
    let status = client
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("{}: xfreerdp was not refused:\n{}\n{}", client.label(), client.log(), log_of(sharer)));
    eprintln!("{}: refused xfreerdp exited with {status}", client.label());
    status
}

/// Watch `client` for [`QUIET`]: none of its screenshots may show any of `texts` (one that does
/// is kept as an artifact).
fn never_shows(client: &Xfreerdp, texts: &[&str], what: &str) -> bool {
    let mut clean = true;
    wait_until(QUIET, || {
        if let Some(shot) = client.shot().filter(|s| texts.iter().any(|t| s.shows(t))) {
            client.save_artifact(&shot, what);
            clean = false;
        }
        !clean
    });
    clean
}

#[test]
fn xfreerdp_with_the_invitation_is_admitted_at_none_and_sees_the_shell_at_view() {
    if !tools_present("xfreerdp sharing interop") {
        return;
    }
    let (command, token) = marked_shell(1);
    let sharer = Sharer::start_command(&command, PASSWORD, &[]);
    let mut alice = attendee(&sharer, PASSWORD, "alice", &[], "admitted");
    alice.wait_window_for(|| log_of(&sharer));
    let attendee = listed(&sharer, "alice", &alice);
    assert_eq!(attendee["level"], "none", "attendees start at none: {attendee}");
    assert!(sharer.log().contains("joined"), "the sharer logs the admission:\n{}", sharer.log());

    // Level none: no graphics, so nothing of the shell (its token, its prompt) in the window.
    assert!(
        never_shows(&alice, &[&token, "$"], "none"),
        "an attendee at level none sees nothing of the shared shell\n{}\nxfreerdp:\n{}",
        log_of(&sharer),
        alice.log()
    );

    // View: the shared shell shows.
    let (code, _, err) = sharer.share(&["level", &id_of(&attendee), "view"]);
    assert_eq!(code, 0, "share level view: {err}\n{}", log_of(&sharer));
    assert!(
        alice.wait_text(&token, "view"),
        "after `share level ID view` the xfreerdp window shows the shared shell's {token}\n{}\nxfreerdp:\n{}",
        log_of(&sharer),
        alice.log()
    );
    assert_eq!(sharer.attendees()[0]["level"], "view");
    assert!(alice.exited().is_none(), "xfreerdp still runs:\n{}", alice.log());
}

#[test]
fn xfreerdp_is_refused_for_a_wrong_password_a_revoked_invitation_and_over_the_limit() {
    if !tools_present("xfreerdp sharing interop") {
        return;
    }
    let (command, token) = marked_shell(2);
    let sharer = Sharer::start_command(&command, PASSWORD, &["--attendee-limit", "1", "--auto-grant", "view"]);

    // A wrong password: refused as insufficient privileges, and the sharer says why.
    let mut mallory = attendee(&sharer, "not-the-password", "mallory", &[], "wrong-password");
    // Exit codes are checked at the end, so one run shows all three.
    let mut exits = Vec::new();
    let status = refused(&mut mallory, &sharer);
    assert!(sharer.wait_log("wrong password", WAIT), "the sharer logs a wrong password:\n{}", sharer.log());
    exits.push(("a wrong password", status, XF_EXIT_INSUFFICIENT_PRIVILEGES, mallory.log()));
    assert!(sharer.attendees().is_empty(), "a refused attendee is not listed: {:?}", sharer.attendees());

    // The first attendee fills the invitation (its limit is 1) and sees the shell.
    let mut first = attendee(&sharer, PASSWORD, "first", &[], "first");
    first.wait_window_for(|| log_of(&sharer));
    let first_listed = listed(&sharer, "first", &first);
    assert!(
        first.wait_text(&token, "first"),
        "auto-grant view: the first attendee sees the shell\n{}\nxfreerdp:\n{}",
        log_of(&sharer),
        first.log()
    );

    // Over the limit: denied.
    let mut second = attendee(&sharer, PASSWORD, "second", &[], "over-limit");
    let status = refused(&mut second, &sharer);
    assert!(sharer.wait_log("limit of 1", WAIT), "the sharer logs the limit:\n{}", sharer.log());
    exits.push(("over the attendee limit", status, XF_EXIT_DENIED_CONNECTION, second.log()));

    // Revoked: the invitation the first attendee came with; new connections are denied.
    let (code, out, err) = sharer.share(&["invitations", "--json"]);
    assert_eq!(code, 0, "share invitations: {err}");
    let invitations: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("invitations JSON ({e}): {out}"));
    assert_eq!(invitations.len(), 1, "{out}");
    let (code, _, err) = sharer.share(&["revoke", &invitations[0]["id"].to_string()]);
    assert_eq!(code, 0, "share revoke: {err}");
    let mut late = attendee(&sharer, PASSWORD, "late", &[], "revoked");
    let status = refused(&mut late, &sharer);
    assert!(sharer.wait_log("is revoked", WAIT), "the sharer logs the revocation:\n{}", sharer.log());
    exits.push(("a revoked invitation", status, XF_EXIT_DENIED_CONNECTION, late.log()));

    // Through all of it the connected attendee stayed: listed, running, still showing the shell.
    let attendees = sharer.attendees();
    assert_eq!(attendees.len(), 1, "only the first attendee is listed: {attendees:?}");
    assert_eq!(attendees[0]["id"], first_listed["id"], "{attendees:?}");
    assert!(first.exited().is_none(), "the first attendee's xfreerdp still runs:\n{}", first.log());
    assert!(first.wait_text(&token, "first-after"), "the first attendee still shows the shell");

    // xfreerdp reports each refusal with the Set Error Info code the sharer sent.
    let wrong: Vec<String> = exits
        .iter()
        .filter(|(_, status, expected, _)| status.code() != Some(*expected))
        .map(|(case, status, expected, log)| format!("{case}: expected exit code {expected} (the ERRINFO), got {status}; xfreerdp:\n{log}"))
        .collect();
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), log_of(&sharer));
}

#[test]
fn xfreerdp_auto_request_control_raises_the_request_and_view_drops_its_keys() {
    if !tools_present("xfreerdp sharing interop") {
        return;
    }
    let (command, token) = marked_shell(3);
    let sharer = Sharer::start_command(&command, PASSWORD, &["--auto-grant", "view"]);
    let events = sharer.events();
    let mut bob = attendee(&sharer, PASSWORD, "bob", &["/auto-request-control"], "request");
    bob.wait_window_for(|| log_of(&sharer));

    // Started at view, xfreerdp asks for interactive by itself; auto-grant view does not give it.
    let request = events
        .wait(WAIT, |e| e["event"] == "control-level-change-requested")
        .unwrap_or_else(|| panic!("a control-level-change-requested event: {:?}\n{}\nxfreerdp:\n{}", events.all(), log_of(&sharer), bob.log()));
    assert_eq!(request["requested"], "interactive", "{request}");
    assert_eq!(request["attendee"]["name"], "bob", "{request}");
    let id = id_of(&request["attendee"]);
    assert!(bob.wait_text(&token, "view"), "auto-grant view: bob sees the shell\n{}\nxfreerdp:\n{}", log_of(&sharer), bob.log());
    assert_eq!(listed(&sharer, "bob", &bob)["level"], "view", "auto-grant view grants no more than view");

    // At view, keys typed into the window do not reach the shell (and do not cost the seat).
    let (typed, output) = typed_token(1);
    bob.type_line(&typed);
    assert!(
        never_shows(&bob, &[&output], "view-typed"),
        "a view attendee's keystrokes reach the shared shell\n{}\nxfreerdp:\n{}",
        log_of(&sharer),
        bob.log()
    );
    assert!(bob.exited().is_none(), "a view attendee's input is dropped, not punished:\n{}", bob.log());
    // One request per participant notice: the answer to a refused request must not provoke another.
    let requests = events.all().iter().filter(|e| e["event"] == "control-level-change-requested").count();
    assert!(requests <= 2, "xfreerdp and the sharer loop on control requests: {requests} of them: {:?}", events.all());

    // Interactive: now the same kind of line reaches the shell.
    let (code, _, err) = sharer.share(&["level", &id, "interactive"]);
    assert_eq!(code, 0, "share level interactive: {err}");
    assert!(
        events.wait(WAIT, |e| e["event"] == "attendee-updated" && e["attendee"]["level"] == "interactive").is_some(),
        "an attendee-updated event: {:?}",
        events.all()
    );
    let (typed, output) = typed_token(2);
    bob.type_line(&typed);
    assert!(
        bob.wait_text(&output, "interactive-typed"),
        "an interactive attendee's keystrokes reach the shared shell ({output})\n{}\nxfreerdp:\n{}",
        log_of(&sharer),
        bob.log()
    );
}

#[test]
fn xfreerdp_auto_request_control_with_auto_grant_interactive_types_into_the_shell() {
    if !tools_present("xfreerdp sharing interop") {
        return;
    }
    let (command, token) = marked_shell(4);
    let sharer = Sharer::start_command(&command, PASSWORD, &["--auto-grant", "interactive"]);
    let events = sharer.events();
    let mut carol = attendee(&sharer, PASSWORD, "carol", &["/auto-request-control"], "auto-interactive");
    carol.wait_window_for(|| log_of(&sharer));
    let request = events
        .wait(WAIT, |e| e["event"] == "control-level-change-requested")
        .unwrap_or_else(|| panic!("a control-level-change-requested event: {:?}\n{}", events.all(), log_of(&sharer)));
    assert_eq!(request["requested"], "interactive", "{request}");
    // It started at view (never interactive before a grant) and was raised by the grant.
    let connected = events.wait(WAIT, |e| e["event"] == "attendee-connected").expect("an attendee-connected event");
    assert_eq!(connected["attendee"]["level"], "view", "{connected}");
    assert!(
        sharer.wait_attendee(WAIT, |a| a["name"] == "carol" && a["level"] == "interactive").is_some(),
        "auto-grant interactive grants the request: {:?}\n{}",
        sharer.attendees(),
        log_of(&sharer)
    );
    assert!(carol.wait_text(&token, "shell"), "carol sees the shell\n{}\nxfreerdp:\n{}", log_of(&sharer), carol.log());
    let (typed, output) = typed_token(3);
    carol.type_line(&typed);
    assert!(
        carol.wait_text(&output, "typed"),
        "keystrokes of an attendee granted interactive reach the shared shell ({output})\n{}\nxfreerdp:\n{}",
        log_of(&sharer),
        carol.log()
    );
}

/// Two loopback ports that were free a moment ago.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// Is something listening on 127.0.0.1:`port`? Read from /proc, not by connecting: socat
/// accepts exactly one connection per listener.
fn listening(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").unwrap_or_default().lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
    })
}

#[test]
fn xfreerdp_behind_a_listening_helper_joins_by_reverse_connect() {
    if !tools_present_with("xfreerdp reverse-connect interop", &[("socat", "socat")]) {
        return;
    }
    let (command, token) = marked_shell(5);
    let sharer = Sharer::start_command(&command, PASSWORD, &["--no-listen", "--auto-grant", "view"]);
    assert!(sharer.addr.is_none());

    // The listening viewer (spec §3.7 as measured here): socat accepts xfreerdp on LP, then
    // listens on RP for the sharer and bridges the two.
    let (lp, rp) = free_ports();
    let dir = tempfile::tempdir().unwrap();
    let mut socat = Proc::spawn(
        "socat",
        Command::new("socat")
            .arg(format!("TCP-LISTEN:{lp},bind=127.0.0.1"))
            .arg(format!("TCP-LISTEN:{rp},bind=127.0.0.1"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("socat.err")).unwrap()),
    );
    let socat_log = || std::fs::read_to_string(dir.path().join("socat.err")).unwrap_or_default();
    assert!(wait_until(WAIT, || listening(lp)), "socat listens on {lp}: {}", socat_log());

    // The invitation of a sharer that does not listen names no address, and xfreerdp 2.11 takes
    // no invitation file without one (it prints its usage). In Remote Assistance mode it dials
    // the file's addresses and falls back to /v: only when none answers, so the viewer's side
    // adds the helper's: the ticket and the rest stay the sharer's.
    assert!(!sharer.invitation.contains("<L "), "a sharer with --no-listen names no address: {}", sharer.invitation);
    let helper = format!("<L P=\"{lp}\" N=\"127.0.0.1\"/></T>");
    assert!(sharer.invitation.contains("</T>"), "{}", sharer.invitation);
    let invitation = sharer.dir.path().join("reverse.msrcIncident");
    std::fs::write(&invitation, format!("{}\n", sharer.invitation.replacen("</T>", &helper, 1))).unwrap();

    // xfreerdp first: its X.224 request waits in socat until the sharer dials in.
    let extra = format!("/v:127.0.0.1:{lp}");
    let mut dave = attendee_with(&invitation, PASSWORD, "dave", &[&extra], "reverse");
    assert!(
        wait_until(WAIT, || listening(rp) || socat.exited().is_some()) && socat.exited().is_none(),
        "socat took xfreerdp's connection and listens on {rp}: {}\nxfreerdp:\n{}",
        socat_log(),
        dave.log()
    );

    let viewer = format!("<E><C><T ID=\"1\" SID=\"0\"><L P=\"{rp}\" N=\"127.0.0.1\"/></T></C></E>");
    let (code, out, err) = sharer.share(&["connect-to-client", &viewer]);
    assert_eq!(code, 0, "connect-to-client: {out}{err}\n{}\nxfreerdp:\n{}\nsocat: {}", log_of(&sharer), dave.log(), socat_log());
    let attendee = listed(&sharer, "dave", &dave);
    assert_eq!(attendee["level"], "view", "auto-grant view: {attendee}");
    dave.wait_window_for(|| log_of(&sharer));
    assert!(
        dave.wait_text(&token, "shell"),
        "the reverse-connected xfreerdp shows the shared shell\n{}\nxfreerdp:\n{}",
        log_of(&sharer),
        dave.log()
    );
    assert!(dave.exited().is_none(), "xfreerdp still runs:\n{}", dave.log());
    drop(dave);
    socat.kill();
}
