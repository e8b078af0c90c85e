//! Several `relance run` daemons on one PostgreSQL journal and one real SMTP server: one decides, all deliver, each reminder exactly once (counted at the server), also when a delivering or the deciding daemon is killed.

#[macro_use]
mod common;
#[path = "common/smtp.rs"]
mod smtp;

use std::collections::BTreeMap;

use common::*;
use smtp::{Mail, SmtpServer};

/// A folder of `n` reminders due on [`AS_OF`], delivered over SMTP to
/// `server` with one connection per daemon, its journal in PostgreSQL. The
/// lease lasts 5 s: long enough for a loaded machine to renew it in time,
/// short enough for a test to see a dead daemon's claims expire.
fn shared_folder(n: usize, server: &SmtpServer, extra: &str) -> Folder {
    let delivery = server
        .delivery()
        .replace("tls: none", "tls: none, connections: 1");
    dunning_folder(
        &format!(
            "limits: {{max_per_run: 5000}}\n{delivery}\n{extra}\n\
             journal: {{url_env: RELANCE_DATABASE_URL, lease_seconds: 5}}"
        ),
        &invoices(n),
    )
    .on(Backend::Postgres)
}

/// How many times the server accepted each Message-ID.
fn deliveries(mails: &[Mail]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for mail in mails {
        *seen.entry(mail.header("Message-ID")).or_default() += 1;
    }
    seen
}

/// Asserts that the server accepted `n` messages, each Message-ID once.
#[track_caller]
fn assert_each_once(server: &SmtpServer, n: usize) {
    let seen = deliveries(&server.accepted());
    let twice: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(seen.len(), n, "messages accepted");
}

/// Waits until the folder's journal has `n` reminders `sent`.
#[track_caller]
fn wait_all_sent(folder: &Folder, n: i64) {
    assert!(
        wait_until(BATCH_DEADLINE, || folder.count_in_state("sent") == n),
        "{} of {n} sent",
        folder.count_in_state("sent")
    );
}

/// The role each daemon logged first.
fn roles(daemons: &mut [Spawned]) -> Vec<String> {
    let mut roles: Vec<String> = daemons
        .iter_mut()
        .map(|d| {
            let line = d.expect_line(DEADLINE, "with its role", |l| l.contains("role: "));
            let at = line.find("role: ").unwrap() + "role: ".len();
            line[at..].split_whitespace().next().unwrap().to_string()
        })
        .collect();
    roles.sort();
    roles
}

/// The pid in an instance name (`HOST:PID`).
fn pid_of(instance: &str) -> u32 {
    instance.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn two_daemons_deliver_a_thousand_reminders_exactly_once() {
    // The server holds the 10th email: the daemon sending it waits there in
    // the middle of its claimed batch, so the other one must claim and
    // deliver the rest (on a fast machine one daemon could otherwise send
    // all thousand before the other claims any); then it is let through.
    let server = SmtpServer::holding(10);
    let folder = shared_folder(1000, &server, "");
    let mut daemons = folder.spawn_daemons(2);
    assert_eq!(roles(&mut daemons), ["deciding", "delivering"]);
    server.wait_until_held(BATCH_DEADLINE);
    let db = folder.database().unwrap();
    let claimers = || -> i64 {
        db.client()
            .query_one(
                "SELECT COUNT(DISTINCT claimed_by) FROM reminder WHERE state = 'sent'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    // Past the held daemon's claimed batch (64 rows), only the other one
    // can have sent them.
    assert!(
        wait_until(BATCH_DEADLINE, || folder.count_in_state("sent") >= 900),
        "{} sent while one daemon waits on the held email",
        folder.count_in_state("sent")
    );
    server.release(true);
    wait_all_sent(&folder, 1000);
    assert_each_once(&server, 1000);
    // Both delivered (the held email by the daemon that claimed it): each
    // row names the instance that claimed it.
    assert_eq!(claimers(), 2);
}

#[test]
fn three_daemons_finish_the_work_of_one_killed_in_the_middle_of_a_batch() {
    // The 300th email is held by the server, its data received but not
    // answered: the daemon sending it is stuck there, in the middle of its
    // claimed batch, when it is killed. Its claims expire after
    // lease_seconds and the two others deliver what it had.
    let server = SmtpServer::holding(300);
    let folder = shared_folder(1000, &server, "");
    let mut daemons = folder.spawn_daemons(3);
    let held = server.wait_until_held(BATCH_DEADLINE);
    let token = held.header("Message-ID");
    let token = token.trim_start_matches('<').split('@').next().unwrap();
    let db = folder.database().unwrap();
    let holder: String = db
        .client()
        .query_one(
            "SELECT claimed_by FROM reminder WHERE message = $1",
            &[&token],
        )
        .unwrap()
        .get(0);
    let stuck = daemons
        .iter()
        .position(|d| d.pid() == pid_of(&holder))
        .expect("the daemon sending the held email");
    daemons[stuck].kill();
    server.release(false);
    wait_all_sent(&folder, 1000);
    assert_each_once(&server, 1000);
    let recovered: i64 = db
        .client()
        .query_one(
            "SELECT COUNT(*) FROM reminder WHERE message = $1 AND claimed_by != $2",
            &[&token, &holder],
        )
        .unwrap()
        .get(0);
    assert_eq!(recovered, 1, "the held email went out from another daemon");
}

#[test]
fn when_the_deciding_daemon_dies_another_takes_over_and_decides_once() {
    let server = SmtpServer::accepting();
    let folder = shared_folder(10, &server, "schedule: {every: 1s}");
    let mut daemons = folder.spawn_daemons(2);
    roles(&mut daemons);
    wait_all_sent(&folder, 10);
    let db = folder.database().unwrap();
    let deciding: String = db
        .client()
        .query_one("SELECT holder FROM relance_lease", &[])
        .unwrap()
        .get(0);
    let (dead, alive) = match daemons[0].pid() == pid_of(&deciding) {
        true => (0, 1),
        false => (1, 0),
    };
    daemons[dead].kill();
    // Ten more invoices fall due: only a deciding daemon journals them.
    folder.write_invoices(&invoices(20));
    daemons[alive].expect_line(DEADLINE, "taking the lease over", |l| {
        l.contains("role: deciding")
    });
    wait_all_sent(&folder, 20);
    // Evaluations go on every second: none sends anything again.
    daemons[alive].expect_evaluation();
    daemons[alive].expect_evaluation();
    assert_each_once(&server, 20);
    assert_eq!(folder.journal().len(), 20);
}

#[test]
fn healthz_and_the_log_say_each_daemons_role() {
    let server = SmtpServer::accepting();
    let folder = shared_folder(2, &server, "");
    let mut daemons: Vec<Spawned> = (0..2)
        .map(|_| {
            let mut cmd = folder.command(&DAEMON);
            cmd.args(["--http", "127.0.0.1:0"]);
            Spawned::start(cmd)
        })
        .collect();
    let consoles: Vec<String> = daemons.iter_mut().map(Spawned::expect_console).collect();
    assert_eq!(roles(&mut daemons), ["deciding", "delivering"]);
    let answered = || -> Vec<String> {
        let mut roles: Vec<String> = consoles
            .iter()
            .map(|base| {
                let mut response = ureq::get(format!("{base}/healthz"))
                    .header("Accept", "application/json")
                    .call()
                    .expect("/healthz answers");
                let body: serde_json::Value =
                    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
                assert_eq!(body["status"], "ok");
                // Both are set by the daemon's first pass, which its log may
                // announce a moment before /healthz can say it.
                let role = body["role"].as_str().unwrap_or_default().to_string();
                if !role.is_empty() {
                    assert!(body["instance"].as_str().unwrap().contains(':'), "{body}");
                }
                role
            })
            .collect();
        roles.sort();
        roles
    };
    assert!(
        wait_until(DEADLINE, || answered() == ["deciding", "delivering"]),
        "{:?}",
        answered()
    );
}

#[test]
fn a_daemon_waiting_on_a_slow_server_keeps_its_claims_alive() {
    // The 5th email is held longer than a claim lasts (lease_seconds: 2):
    // its daemon renews its claims meanwhile, so that the other one does
    // not send the email a second time.
    let server = SmtpServer::holding(5);
    let folder = shared_folder(20, &server, "");
    let _daemons = folder.spawn_daemons(2);
    let held = server.wait_until_held(BATCH_DEADLINE);
    let token = held.header("Message-ID");
    let token = token.trim_start_matches('<').split('@').next().unwrap();
    let db = folder.database().unwrap();
    let claim = || -> (String, f64) {
        let row = db
            .client()
            .query_one(
                "SELECT claimed_by, EXTRACT(EPOCH FROM claimed_until)::float8 FROM reminder WHERE message = $1",
                &[&token],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let (holder, until) = claim();
    assert!(
        wait_until(DEADLINE, || claim().1 > until + 2.0),
        "the claim was renewed past its first expiry"
    );
    assert_eq!(claim().0, holder, "nobody else took it");
    server.release(true);
    wait_all_sent(&folder, 20);
    assert_each_once(&server, 20);
}

#[test]
fn three_daemons_writing_to_the_outbox_never_write_a_file_twice_when_one_is_killed() {
    // Files prove delivery: the reminders a killed daemon wrote but had not
    // journaled yet are marked sent by the others, not written again. The
    // temporary file of F500's email is a FIFO: the daemon that claimed it
    // blocks there, in the middle of its claimed batch, and is killed.
    let folder = dunning_folder(
        "limits: {max_per_run: 5000}\njournal: {url_env: RELANCE_DATABASE_URL, lease_seconds: 5}",
        &invoices(1000),
    )
    .on(Backend::Postgres);
    let stuck = folder
        .path()
        .join("outbox/.2026-12-01.F500.dunning.overdue.0.eml.tmp");
    std::fs::create_dir_all(stuck.parent().unwrap()).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&stuck)
        .status()
        .unwrap();
    assert!(made.success());
    let mut daemons = folder.spawn_daemons(3);
    let db = folder.database().unwrap();
    // None until the deciding daemon has made the schema and journaled F500.
    let claimed_by = || -> Option<String> {
        db.client()
            .query_opt(
                "SELECT claimed_by FROM reminder WHERE invoice = 'F500' AND state = 'planned'",
                &[],
            )
            .ok()
            .flatten()
            .and_then(|row| row.get(0))
    };
    assert!(wait_until(BATCH_DEADLINE, || claimed_by().is_some()));
    let holder = claimed_by().unwrap();
    let killed = daemons
        .iter()
        .position(|d| d.pid() == pid_of(&holder))
        .expect("the daemon that claimed F500");
    daemons[killed].kill();
    std::fs::remove_file(&stuck).unwrap();
    let delivered = || -> Vec<std::path::PathBuf> {
        let mut files = folder.files("outbox");
        files.retain(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.'));
        files
    };
    use std::os::unix::fs::MetadataExt;
    let written: Vec<(std::path::PathBuf, u64)> = delivered()
        .into_iter()
        .filter_map(|f| std::fs::metadata(&f).ok().map(|m| (f, m.ino())))
        .collect();
    wait_all_sent(&folder, 1000);
    assert_eq!(delivered().len(), 1000);
    for (file, inode) in written {
        assert_eq!(
            std::fs::metadata(&file).unwrap().ino(),
            inode,
            "{} was written before the kill and must not be written again",
            file.display()
        );
    }
    let by_others: i64 = db
        .client()
        .query_one(
            "SELECT COUNT(*) FROM reminder WHERE invoice = 'F500' AND claimed_by != $1",
            &[&holder],
        )
        .unwrap()
        .get(0);
    assert_eq!(by_others, 1, "F500 went out from another daemon");
}
