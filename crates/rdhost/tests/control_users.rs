//! The control socket as different system users see it: a permission matrix of every operation
//! run by the session's own user, by another user, by root and by a member of `admin_group`;
//! and one session watched by 20 viewer attachments at once.
//!
//! The matrix creates system accounts, so it needs root. Without root it fails under CI (where
//! it must run) and otherwise explains and returns.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Host, on_screen};
use rdhost_client::Client;

const WAIT: Duration = Duration::from_secs(20);

const ANN: &str = "rdtest-ann";
const BOB: &str = "rdtest-bob";
const ADM: &str = "rdtest-adm";
const ADMINS: &str = "rdtest-admins";
const ANN_PW: &str = "ann-pw-1";
const BOB_PW: &str = "bob-pw-1";

/// Whether this process may create system accounts. Under CI a non-root run is a failure (the
/// matrix must run there); elsewhere it says why and the test passes without running.
fn root_or_skip(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} must run as root under CI: it creates system users ({ANN}, {BOB}, {ADM}) and runs the CLI as them"
    );
    eprintln!("{test}: skipped, not root (it creates system users and runs the CLI as them)");
    false
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn run_ok(program: &str, args: &[&str]) {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The system accounts and the admin group of the matrix; removed when dropped, whatever
/// happened in between. Also a copy of the CLI the accounts can execute: the build directory
/// usually sits under root's private home.
struct Accounts {
    cli_dir: tempfile::TempDir,
}

impl Accounts {
    fn create() -> Accounts {
        let cli_dir = tempfile::Builder::new().prefix("rdhost-cli-").tempdir().expect("temp dir for the CLI");
        // The guard exists before the first account does, so a half-done setup is undone too.
        let accounts = Accounts { cli_dir };
        accounts.remove(); // leftovers of a run that was killed
        std::fs::set_permissions(accounts.cli_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cli = accounts.cli();
        if std::fs::hard_link(BIN, &cli).is_err() {
            std::fs::copy(BIN, &cli).expect("copy the rdhost binary");
        }
        std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
        run_ok("groupadd", &[ADMINS]);
        for user in [ANN, BOB] {
            run_ok("useradd", &["--no-create-home", "--shell", "/bin/sh", user]);
        }
        run_ok("useradd", &["--no-create-home", "--shell", "/bin/sh", "--groups", ADMINS, ADM]);
        accounts
    }

    fn cli(&self) -> PathBuf {
        self.cli_dir.path().join("rdhost")
    }

    fn remove(&self) {
        for user in [ANN, BOB, ADM] {
            // -f: a session process may still be ending.
            let _ = run("userdel", &["-f", user]);
        }
        let _ = run("groupdel", &[ADMINS]);
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Who runs a CLI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Root,
    User(&'static str),
}

/// `rdhost ARGS --socket <host's>` as `who`; (exit code, stdout, stderr).
fn cli(host: &Host, accounts: &Accounts, who: Who, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = match who {
        Who::Root => Command::new(BIN),
        Who::User(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(accounts.cli());
            c
        }
    };
    cmd.args(args).arg("--socket").arg(host.socket()).env_remove("RDHOST_CONTROL_SOCKET").current_dir("/");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run the rdhost CLI");
    if let Some(text) = stdin {
        writeln!(child.stdin.take().unwrap(), "{text}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Run `args` as `who` and check the outcome: `0` = success, else a non-zero exit whose message
/// carries that Windows code. Returns stdout.
fn expect(host: &Host, accounts: &Accounts, who: Who, args: &[&str], stdin: Option<&str>, code: u32) -> String {
    let (exit, out, err) = cli(host, accounts, who, args, stdin);
    if code == 0 {
        assert_eq!(exit, 0, "{who:?} rdhost {args:?} should succeed; stderr: {err}\nhost log tail:\n{}", tail(host));
    } else {
        assert_ne!(exit, 0, "{who:?} rdhost {args:?} should fail with {code}; stdout: {out}");
        assert!(err.contains(&format!("({code} ")), "{who:?} rdhost {args:?}: expected code {code} in: {err}");
    }
    out
}

fn tail(host: &Host) -> String {
    let log = host.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The state of every session, as root sees it.
fn states(host: &Host) -> Vec<(u32, String)> {
    host.sessions().iter().map(|s| (s["id"].as_u64().unwrap() as u32, s["state"].as_str().unwrap().to_owned())).collect()
}

fn assert_states(host: &Host, expected: &[(u32, Option<&str>)], after: &str) {
    for &(id, state) in expected {
        assert!(host.wait_state(id, state, WAIT), "after {after}: session {id} should be {state:?}; sessions: {:?}", states(host));
    }
}

/// Log on with a headless client; the session id once the shell's prompt is up.
async fn logon(host: &Host, user: &str, password: &str) -> (Client, u32) {
    open(host.client(user, password)).await.unwrap_or_else(|e| panic!("{e}\nhost log:\n{}", tail(host)))
}

/// [`logon`] without the host at hand (for spawned tasks): failures as text.
async fn open(cfg: rdhost_client::ClientConfig) -> Result<(Client, u32), String> {
    let user = cfg.username.clone();
    let mut client = rdhost_client::connect(cfg).await.map_err(|e| format!("{user} logs on: {e}"))?;
    let ready = client
        .pump_until(WAIT, |c| c.server_session_id().is_some() && (on_screen(c, "$") || on_screen(c, "#")))
        .await
        .map_err(|e| format!("{user}: the connection ended before the prompt: {e}"))?;
    match client.server_session_id() {
        Some(id) if ready => Ok((client, id)),
        _ => Err(format!("{user}: no session id and shell prompt within {WAIT:?}")),
    }
}

/// Processes running as system user `name` (none before its sessions start: the account is new).
fn processes_of(name: &str) -> usize {
    let out = run("id", &["-u", name]);
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| status.lines().any(|l| l.strip_prefix("Uid:").and_then(|v| v.split_whitespace().next()) == Some(uid.as_str())))
        .count()
}

/// The error info a client was closed with (pumping it until it is), or None if still open.
async fn closed_with(client: &mut Client) -> Option<Option<u32>> {
    match client.pump_until(WAIT, Client::closed).await {
        Ok(true) | Err(_) => Some(client.error_info()),
        Ok(false) => None,
    }
}

/// Add a users-file account whose sessions run as the system user of the same name.
fn add_account(host: &Host, name: &str, password: &str) {
    common::add_user_with(host.state.path(), name, password, &["--system-user", name]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix_as_root_owners_other_users_and_admins() {
    if !root_or_skip("permission_matrix_as_root_owners_other_users_and_admins") {
        return;
    }
    let started = Instant::now();
    // Declared before the host: dropped after it, when the sessions' processes are gone.
    let accounts = Accounts::create();
    let host = Host::start(
        &[],
        &format!("auth = \"users-file\"\nadmin_group = \"{ADMINS}\"\nsingle_session_per_user = false\n"),
    );
    add_account(&host, ANN, ANN_PW);
    add_account(&host, BOB, BOB_PW);
    let (root, ann, bob, adm) = (Who::Root, Who::User(ANN), Who::User(BOB), Who::User(ADM));
    let ex = |who: Who, args: &[&str], code: u32| expect(&host, &accounts, who, args, None, code);

    let (mut ann_client, a1) = logon(&host, ANN, ANN_PW).await;
    let (mut bob_client, b1) = logon(&host, BOB, BOB_PW).await;
    let (a1s, b1s) = (a1.to_string(), b1.to_string());
    let both_active = [(a1, Some("Active")), (b1, Some("Active"))];
    // Sessions of these accounts run as the system users of the same name.
    for user in [ANN, BOB] {
        assert!(processes_of(user) > 0, "{user}'s session runs processes as system user {user}");
    }
    let sessions = host.sessions();
    for (id, user) in [(a1, ANN), (b1, BOB)] {
        let s = sessions.iter().find(|s| s["id"] == id).expect("listed");
        assert_eq!(s["user"], user, "{s}");
    }

    // query: everyone may, on every session; the listing shows everyone's sessions.
    for who in [ann, bob, root, adm] {
        for (id, user) in [(&a1s, ANN), (&b1s, BOB)] {
            let out = ex(who, &["query", "session", id, "--json"], 0);
            let one: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{who:?}: no JSON ({e}): {out}"));
            assert_eq!((one.len(), one[0]["user"].as_str()), (1, Some(user)), "{who:?} queries {id}: {out}");
        }
        let all: Vec<serde_json::Value> = serde_json::from_str(&ex(who, &["query", "session", "--json"], 0)).unwrap();
        let ids: BTreeSet<u64> = all.iter().filter_map(|s| s["id"].as_u64()).collect();
        assert!(ids.contains(&u64::from(a1)) && ids.contains(&u64::from(b1)), "{who:?} sees both sessions: {all:?}");
        let by_user: Vec<serde_json::Value> = serde_json::from_str(&ex(who, &["query", "session", ANN, "--json"], 0)).unwrap();
        assert_eq!(by_user.len(), 1, "{who:?}: query session {ANN}: {by_user:?}");
    }

    // msg (no --wait: IDASYNC at once): own and admin yes, another user's no.
    for (who, id, code) in [(ann, &a1s, 0), (bob, &b1s, 0), (bob, &a1s, 5), (ann, &b1s, 5), (root, &a1s, 0), (adm, &b1s, 0)] {
        let out = ex(who, &["msg", id, "--time", "1", "matrix", "message"], code);
        if code == 0 {
            assert!(out.contains("IDASYNC (32001)"), "{who:?} msg {id}: {out}");
        }
    }

    // disconnect, logoff, reset on another user's session: access denied, nothing changes.
    for (who, id) in [(bob, &a1s), (ann, &b1s)] {
        for op in ["disconnect", "logoff", "reset"] {
            ex(who, &[op, id], 5);
        }
    }
    assert_states(&host, &both_active, "refused disconnect/logoff/reset");

    // connect: CONNECT+DISCONNECT on the moved session and DISCONNECT on the destination are
    // checked before any password, so a password does not help a non-owner.
    let ann_to_bob = ["connect", a1s.as_str(), "--dest", b1s.as_str()];
    let ann_to_bob_pw = ["connect", a1s.as_str(), "--dest", b1s.as_str(), "--password", "-"];
    ex(bob, &ann_to_bob, 5);
    expect(&host, &accounts, bob, &ann_to_bob_pw, Some(ANN_PW), 5);
    ex(ann, &ann_to_bob, 5); // ann owns the moved session, but not bob's terminal
    expect(&host, &accounts, ann, &ann_to_bob_pw, Some(ANN_PW), 5);
    // An admin who is not the session's user needs its user's password (root does not).
    ex(adm, &ann_to_bob, 1326);
    ex(adm, &["connect", &a1s, "--dest", &b1s, "--password", "wrong-pw"], 1326);
    assert_states(&host, &both_active, "refused connects");

    // shadow needs the caller's own session to show it in: refused from outside for everyone.
    for who in [ann, bob, root, adm] {
        for id in [&a1s, &b1s] {
            let (exit, _, err) = cli(&host, &accounts, who, &["shadow", id], None);
            assert_ne!(exit, 0, "{who:?} shadow {id} from outside a session");
            assert!(!err.is_empty(), "{who:?} shadow {id}: a reason is printed");
        }
    }
    assert_states(&host, &both_active, "refused shadows");

    // connect by the admin-group member with ann's password: bob's window shows ann's session,
    // ann's own client is told another connection took over (0x5), bob's session is Disconnected.
    expect(&host, &accounts, adm, &ann_to_bob_pw, Some(ANN_PW), 0);
    assert_eq!(closed_with(&mut ann_client).await, Some(Some(0x5)), "ann's client after admin connect");
    assert!(bob_client.pump_until(WAIT, |c| c.server_session_id() == Some(a1)).await.unwrap(), "bob's window shows session {a1}");
    assert_states(&host, &[(a1, Some("Active")), (b1, Some("Disconnected"))], "admin connect");

    // connect by root, no password: that same window goes back to bob's session.
    ex(root, &["connect", &b1s, "--dest", &a1s], 0);
    assert!(bob_client.pump_until(WAIT, |c| c.server_session_id() == Some(b1)).await.unwrap(), "bob's window shows session {b1}");
    assert!(!bob_client.closed(), "the moved client never reconnected");
    assert_states(&host, &[(a1, Some("Disconnected")), (b1, Some("Active"))], "root connect");

    // connect by the owner between two of her own sessions, no password.
    let (mut ann_first, again) = logon(&host, ANN, ANN_PW).await;
    assert_eq!(again, a1, "ann gets her disconnected session back");
    let (mut ann_second, a2) = logon(&host, ANN, ANN_PW).await;
    assert_ne!(a2, a1, "a second session (single_session_per_user = false)");
    ex(ann, &["connect", &a1s, "--dest", &a2.to_string()], 0);
    assert_eq!(closed_with(&mut ann_first).await, Some(Some(0x5)), "ann's first client after her own connect");
    assert!(ann_second.pump_until(WAIT, |c| c.server_session_id() == Some(a1)).await.unwrap(), "ann's second window shows session {a1}");
    assert_states(&host, &[(a1, Some("Active")), (a2, Some("Disconnected"))], "own connect");

    // disconnect: own, root, admin group. Each time the client is told 0x1 and ann logs on again
    // (she gets the session she was disconnected from: the most recent).
    let mut client = ann_second;
    for who in [ann, root, adm] {
        ex(who, &["disconnect", &a1s], 0);
        assert_eq!(closed_with(&mut client).await, Some(Some(0x1)), "{who:?} disconnect");
        assert_states(&host, &[(a1, Some("Disconnected")), (b1, Some("Active"))], &format!("{who:?} disconnect"));
        let (next, id) = logon(&host, ANN, ANN_PW).await;
        assert_eq!(id, a1, "ann reconnects to the session {who:?} disconnected");
        client = next;
    }

    // logoff and reset: own, root, admin group; each ends a session (a fresh one for each).
    // Ann's sessions are now a1 (Active, `client`) and a2 (Disconnected).
    let mut target = a1;
    for (op, who) in [("logoff", ann), ("logoff", root), ("logoff", adm), ("reset", ann), ("reset", root), ("reset", adm)] {
        ex(who, &[op, &target.to_string()], 0);
        let closed = closed_with(&mut client).await;
        assert!(closed.is_some(), "{who:?} {op} {target}: the client is closed");
        if op == "logoff" {
            assert_eq!(closed, Some(Some(0x2)), "{who:?} logoff {target}: ERRINFO_LOGOFF_BY_USER");
        }
        assert_states(&host, &[(target, None), (b1, Some("Active"))], &format!("{who:?} {op}"));
        (client, target) = logon(&host, ANN, ANN_PW).await;
    }
    // Bob ends his own session too.
    ex(bob, &["logoff", &b1s], 0);
    assert_eq!(closed_with(&mut bob_client).await, Some(Some(0x2)), "bob's own logoff");
    assert_states(&host, &[(b1, None), (target, Some("Active"))], "bob's own logoff");
    drop(client);
    drop(host);
    eprintln!("permission matrix: {:.1?}", started.elapsed());
}

/// A command whose output (`x<product>y`) appears only when a shell evaluated it.
fn token(seed: u32) -> (String, String) {
    let a = 1000 + (std::process::id() % 9000);
    let b = 211 + seed * 17;
    (format!("echo x$(({a}*{b}))y\n"), format!("x{}y", a * b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_viewers_of_one_session_all_receive_its_frames() {
    const VIEWERS: usize = 20;
    let started = Instant::now();
    let host = Host::start(
        &[("alice", "alice-pw-1"), ("watcher", "watcher-pw-1")],
        "single_session_per_user = false\nshadow = \"view\"\n",
    );
    let (mut alice, a) = logon(&host, "alice", "alice-pw-1").await;
    // The watchers log on side by side: one after another would take most of the test's time.
    let mut logons = tokio::task::JoinSet::new();
    for i in 0..VIEWERS {
        let cfg = host.client("watcher", "watcher-pw-1");
        logons.spawn(async move { (i, open(cfg).await) });
    }
    let mut viewers = Vec::with_capacity(VIEWERS);
    while let Some(done) = logons.join_next().await {
        let (i, result) = done.expect("logon task");
        viewers.push(result.unwrap_or_else(|e| panic!("watcher {i}: {e}\nhost log:\n{}", tail(&host))));
    }
    let ids: BTreeSet<u32> = viewers.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), VIEWERS, "every watcher logon is a session of its own");
    let logged_on = started.elapsed();

    // Each watcher asks from inside its own session (the session's environment names the host).
    for (client, _) in &mut viewers {
        client.type_text(&format!("{BIN} shadow {a}\n")).await.unwrap();
    }
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let shadowing = host.sessions().iter().filter(|s| s["state"] == "Shadow").count();
        if shadowing == VIEWERS {
            break;
        }
        assert!(Instant::now() < deadline, "{shadowing} of {VIEWERS} sessions shadow session {a}; host log:\n{}", tail(&host));
        std::thread::sleep(Duration::from_millis(100));
    }

    let sessions = host.sessions();
    let target = sessions.iter().find(|s| s["id"] == a).expect("alice's session listed");
    assert_eq!(target["state"], "Active", "{target}");
    let attached = target["viewers"].as_array().unwrap_or_else(|| panic!("no viewers list: {target}"));
    assert_eq!(attached.len(), VIEWERS, "{target}");
    assert!(attached.iter().all(|v| v["control_level"] == "view"), "{target}");
    let viewer_sessions: BTreeSet<u32> = attached.iter().filter_map(|v| v["session"].as_u64()).map(|id| id as u32).collect();
    assert_eq!(viewer_sessions, ids, "the viewers are the watcher sessions");
    for s in sessions.iter().filter(|s| ids.contains(&(s["id"].as_u64().unwrap() as u32))) {
        assert_eq!((s["state"].as_str(), s["shadowing"].as_u64()), (Some("Shadow"), Some(u64::from(a))), "{s}");
    }

    // Alice's output reaches every viewer window.
    let (command, shown) = token(1);
    alice.type_text(&command).await.unwrap();
    assert!(alice.pump_until(WAIT, |c| on_screen(c, &shown)).await.unwrap(), "alice sees her own output");
    let typed = started.elapsed();
    for (i, (client, id)) in viewers.iter_mut().enumerate() {
        let seen = client.pump_until(WAIT, |c| on_screen(c, &shown)).await.unwrap();
        if !seen {
            client.save_png(&common::artifacts_dir().join(format!("viewer-{i}.png"))).unwrap();
        }
        assert!(seen, "viewer {i} (session {id}) shows {shown}; host log:\n{}", tail(&host));
    }
    eprintln!(
        "20 viewers: logons {:.1?}, shadow + first output {:.1?}, all viewers saw it {:.1?}",
        logged_on,
        typed - logged_on,
        started.elapsed() - typed
    );
}
