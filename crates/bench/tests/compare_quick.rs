//! A quick run of `rdhost-bench --compare` (small counts) against rdhost, xrdp and FreeRDP's shadow
//! server: it must finish, write BENCHMARKS.md with every figure's row and a number for every
//! server where one is expected, and a well-formed BENCHMARKS.svg with its bars. The figures
//! themselves are not checked: performance lives in the benchmark, not in tests.
//!
//! Needs root (the harness installs packages, creates a PAM user, runs xrdp's daemons) and the
//! workspace's binaries built next to the benchmark (rdhost, rdhost-xrecorder, rdhost-xanimate:
//! `cargo build --workspace`). Without root it is skipped, unless CI is set: then it fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The quick run takes about two minutes on the 2-core CI machine; this is the limit.
const LIMIT: Duration = Duration::from_secs(8 * 60);

/// Rows BENCHMARKS.md must have (the start of each figure's label).
const ROWS: &[&str] = &[
    "key press → changed pixels decoded, RemoteFX",
    "same, p95",
    "same, client offering no codec",
    "same, client offering H.264 over EGFX",
    "full-screen animation 1280x800, client offering H.264: frames shown per second",
    "full-screen animation 1920x1080, client offering H.264: frames shown per second",
    "full-screen animation 1280x800: frames shown per second",
    "server CPU (server + X server), 1280x800",
    "bandwidth, 1280x800",
    "bytes per frame shown, 1280x800",
    "full-screen animation 1920x1080: frames shown per second",
    "server CPU (server + X server), 1920x1080",
    "xterm scrolling `seq`",
    "bytes per typed character",
    "memory per session",
    "TCP connect → first full picture, new session",
    "TCP connect → first full picture, reconnect",
    "server CPU with 1 client",
    "CPU with N clients / with 1",
];

/// Rows where every server must have a number (no "—", no "failed").
const MEASURED_EVERYWHERE: &[&str] = &[
    "key press → changed pixels decoded, RemoteFX",
    "full-screen animation 1280x800: frames shown per second",
    "full-screen animation 1920x1080: frames shown per second",
    "bytes per typed character",
    "memory per session",
    "TCP connect → first full picture, new session",
];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn quick_comparison_writes_every_row_and_the_chart() {
    let ci = std::env::var_os("CI").is_some();
    if !is_root() {
        assert!(!ci, "CI is set but the test does not run as root: the comparison needs root (packages, a PAM user, xrdp's daemons)");
        eprintln!("skipped: the comparison needs root");
        return;
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_rdhost-bench"));
    let dir = bench.parent().unwrap();
    for needed in ["rdhost", "rdhost-xrecorder", "rdhost-xanimate"] {
        assert!(dir.join(needed).is_file(), "{} is not built next to rdhost-bench: run `cargo build --workspace` first", needed);
    }
    let out = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut child = Command::new(&bench)
        .args(["--compare", "--quick", "--quiet-timeout", "3", "--out"])
        .arg(out.path())
        .stdin(Stdio::null())
        .spawn()
        .expect("start rdhost-bench");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > LIMIT {
            // SIGINT: the harness stops its servers and removes its test user on the way out.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
            panic!("the quick comparison took more than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("quick comparison took {:.0} s", t0.elapsed().as_secs_f64());
    let md = std::fs::read_to_string(out.path().join("BENCHMARKS.md")).unwrap_or_default();
    assert!(status.success(), "rdhost-bench --compare --quick failed ({status}); BENCHMARKS.md:\n{md}");

    for row in ROWS {
        assert!(md.lines().any(|l| l.starts_with("| ") && l.contains(row)), "BENCHMARKS.md has no row {row:?}:\n{md}");
    }
    let header = md.lines().find(|l| l.starts_with("| figure |")).expect("the table's header");
    for column in ["rdhost", "xrdp", "shadow", "rdhost / xrdp", "rdhost / shadow", "target", "met"] {
        assert!(header.contains(&format!(" {column} |")), "no column {column:?} in {header:?}");
    }
    for row in MEASURED_EVERYWHERE {
        let line = md.lines().find(|l| l.starts_with("| ") && l.contains(row)).unwrap();
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | label | unit | rdhost | xrdp | shadow | …
        for (i, server) in ["rdhost", "xrdp", "shadow"].iter().enumerate() {
            let v = cells[3 + i];
            assert!(v.parse::<f64>().is_ok(), "{server} has no number for {row:?}: {v:?} in {line}");
        }
    }
    for section in ["## Where rdhost loses", "](BENCHMARKS.svg)", "- machine:", "- command: `", "- date: "] {
        assert!(md.contains(section), "BENCHMARKS.md lacks {section:?}");
    }

    // The chart: well-formed XML with an <svg> root and its bars.
    let svg = std::fs::read_to_string(out.path().join("BENCHMARKS.svg")).expect("BENCHMARKS.svg");
    let mut reader = quick_xml::Reader::from_str(&svg);
    let (mut root, mut rects, mut texts) = (None, 0, Vec::new());
    let mut in_text = false;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) | Ok(quick_xml::events::Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                root.get_or_insert(name.clone());
                rects += usize::from(name == "rect");
                in_text = name == "text";
            }
            Ok(quick_xml::events::Event::Text(t)) if in_text => texts.push(String::from_utf8_lossy(&t).into_owned()),
            Ok(quick_xml::events::Event::End(_)) => in_text = false,
            Ok(quick_xml::events::Event::Eof) => break,
            Err(e) => panic!("BENCHMARKS.svg is not well-formed XML at {}: {e}", reader.buffer_position()),
            _ => {}
        }
    }
    assert_eq!(root.as_deref(), Some("svg"), "BENCHMARKS.svg's root element");
    // The background plus one bar per figure measured at both rdhost and xrdp (at least the six
    // measured everywhere).
    assert!(rects > MEASURED_EVERYWHERE.len(), "BENCHMARKS.svg has {rects} rectangles: the bars are missing");
    assert!(texts.iter().any(|t| t.contains("frames shown per second")), "the chart's labels are missing: {texts:?}");
}
