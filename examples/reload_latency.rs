//! Daemon figures for bench/run.sh: the time from saving an edited policy to
//! the daemon saying the new rules are live, and to its line comparing the
//! next 14 days (median and p95 over N edits), and the daemon's memory before
//! and after many reloads.
//!
//! cargo run --release --example reload_latency -- DIR [EDITS] [RELOADS]
//!
//! It runs the `relance` built next to it (target/release/relance).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The daemon's line once the new rules decide: `now live: …` since the
/// comparison of the next 14 days comes on a line of its own; before that
/// the single `reload ok: …` line said both.
fn live(line: &str) -> bool {
    line.contains("now live: ") || line.contains("reload ok: ")
}

/// The line that compares the next 14 days under the old and new rules.
fn compared(line: &str) -> bool {
    line.contains("reload ok: ")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// When the first line matching `wanted` arrived (lines before it are read
/// and dropped), and that line.
fn wait_for(lines: &mpsc::Receiver<String>, wanted: impl Fn(&str) -> bool) -> (Instant, String) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return (Instant::now(), line),
            Ok(_) => {}
            Err(e) => panic!("waiting for a log line: {e}"),
        }
    }
}

/// The median and the 95th percentile (nearest rank), in milliseconds.
fn summary(mut latencies: Vec<Duration>) -> (f64, f64) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = latencies[latencies.len() / 2];
    let p95 = latencies[(latencies.len() * 95).div_ceil(100) - 1];
    (ms(median), ms(p95))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: reload_latency DIR [EDITS] [RELOADS]");
    let edits: usize = args.next().map_or(20, |n| n.parse().unwrap());
    let reloads: usize = args.next().map_or(1000, |n| n.parse().unwrap());
    // target/<profile>/examples/reload_latency → target/<profile>/relance,
    // wherever CARGO_TARGET_DIR puts it.
    let exe = std::env::current_exe().expect("the example's own path");
    let relance = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/examples")
        .join("relance");
    let mut child = Command::new(&relance)
        .args([
            "run",
            "--dry-run",
            "--as-of",
            "2026-12-01",
            "--log-format",
            "json",
            "--dir",
            &dir,
        ])
        .env("RELANCE_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", relance.display()));
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_for(&lines, |l| l.contains("evaluation done"));
    let pid = child.id();
    let policy = Path::new(&dir).join("rules/standard.yaml");
    let original = std::fs::read_to_string(&policy).expect("rules/standard.yaml");
    let (mut to_live, mut to_compared) = (Vec::new(), Vec::new());
    for i in 0..edits {
        // An editor's save: write a temporary file, rename it over the policy.
        // Every other edit moves the firmer reminder a day later, so that
        // the plan changes; the others only add a comment.
        let mut edited = original.replacen("description:", &format!("# edit {i}\ndescription:"), 1);
        if i % 2 == 0 {
            edited = edited.replacen("offset: 15", "offset: 16", 1);
        }
        let tmp = Path::new(&dir).join("rules/.standard.yaml.swp");
        std::fs::write(&tmp, edited).unwrap();
        let saved = Instant::now();
        std::fs::rename(&tmp, &policy).unwrap();
        let (at, line) = wait_for(&lines, live);
        to_live.push(at - saved);
        if !compared(&line) {
            let (at, _) = wait_for(&lines, compared);
            to_compared.push(at - saved);
        } else {
            to_compared.push(at - saved);
        }
    }
    std::fs::write(&policy, &original).unwrap();
    wait_for(&lines, compared);
    let (median, p95) = summary(to_live);
    println!("reload_live_median_ms {median:.1}");
    println!("reload_live_p95_ms {p95:.1}");
    let (median, p95) = summary(to_compared);
    println!("reload_compared_median_ms {median:.1}");
    println!("reload_compared_p95_ms {p95:.1}");
    println!("rss_before_reloads_kib {}", rss_kib(pid));
    // Several points, not only the last: the allocator keeps what the first
    // reloads freed for the next ones, so a plateau is no growth and a slope is a leak.
    for done in 1..=reloads {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        wait_for(&lines, compared);
        if done == 10 || done % (reloads / 4).max(1) == 0 {
            println!("rss_after_{done}_reloads_kib {}", rss_kib(pid));
        }
    }
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
}
