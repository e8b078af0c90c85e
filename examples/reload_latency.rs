//! Daemon figures for bench/run.sh: the time from saving an edited policy to
//! the daemon logging its new plan (median and p95 over N edits), and the
//! daemon's memory before and after many reloads.
//!
//! cargo run --release --example reload_latency -- DIR [EDITS] [RELOADS]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Instant::now(),
            Ok(_) => {}
            Err(e) => panic!("waiting for {needle:?}: {e}"),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: reload_latency DIR [EDITS] [RELOADS]");
    let edits: usize = args.next().map_or(20, |n| n.parse().unwrap());
    let reloads: usize = args.next().map_or(1000, |n| n.parse().unwrap());
    let relance = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/relance");
    let mut child = Command::new(relance)
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
        .expect("relance");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_for(&lines, "evaluation done");
    let pid = child.id();
    let policy = Path::new(&dir).join("rules/standard.yaml");
    let original = std::fs::read_to_string(&policy).expect("rules/standard.yaml");
    let mut latencies = Vec::new();
    for i in 0..edits {
        // An editor's save: write a temporary file, rename it over the policy.
        let edited = original.replacen("description:", &format!("# edit {i}\ndescription:"), 1);
        let tmp = Path::new(&dir).join("rules/.standard.yaml.swp");
        std::fs::write(&tmp, edited).unwrap();
        let saved = Instant::now();
        std::fs::rename(&tmp, &policy).unwrap();
        let logged = wait_for(&lines, "new plan");
        latencies.push(logged - saved);
    }
    std::fs::write(&policy, &original).unwrap();
    wait_for(&lines, "new plan");
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = latencies[latencies.len() / 2];
    let p95 = latencies[(latencies.len() * 95).div_ceil(100) - 1];
    println!("reload_median_ms {:.1}", ms(median));
    println!("reload_p95_ms {:.1}", ms(p95));
    println!("rss_before_reloads_kib {}", rss_kib(pid));
    // Several points, not only the last: the allocator keeps what the first
    // reloads freed for the next ones, so a plateau is no growth and a slope is a leak.
    for done in 1..=reloads {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        wait_for(&lines, "new plan");
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
