//! Shared by the integration tests: a relance folder in a temporary directory
//! and the real `relance` binary run on it.
#![allow(dead_code)]

pub mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `relance` binary cargo built for these tests.
pub fn relance() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relance"))
}

/// The binary with its log level pinned, whatever the environment says.
fn relance_logging_info() -> Command {
    let mut cmd = relance();
    cmd.env("RELANCE_LOG", "info");
    cmd.env_remove("RUST_LOG");
    cmd
}

/// What a finished command printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Checks the exit code (failing the test with the output when it is
    /// another) and gives the run back.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The lines of stderr (the log of `run`) that contain `part`.
    pub fn log_lines(&self, part: &str) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.contains(part)).collect()
    }

    /// The warnings `check` prints on stdout, one per line.
    pub fn warnings(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.contains("warning:"))
            .collect()
    }

    /// The stdout parsed as JSON (panics with the output when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A relance folder in a temporary directory, deleted when dropped.
pub struct Folder {
    dir: tempfile::TempDir,
    /// The PostgreSQL database of its journal ([`Folder::on`]); none: the
    /// SQLite file `state/relance.db`.
    database: Option<postgres::Database>,
}

/// Where a test's folder keeps its journal: the tests of the journal and
/// the daemon run once on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The journal line a folder on PostgreSQL has in its relance.yaml: a
/// short lease, so that a test sees the claims of a killed daemon expire.
const POSTGRES_JOURNAL: &str = "journal: {url_env: RELANCE_DATABASE_URL, lease_seconds: 2}";

/// Defines the test `NAME` twice, `NAME::sqlite` and `NAME::postgres`:
/// its body runs with `backend` set to each (a folder made with
/// `.on(backend)` keeps its journal there).
#[macro_export]
macro_rules! on_both_backends {
    ($(#[$meta:meta])* fn $name:ident($backend:ident: Backend) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$meta])*
            fn body($backend: $crate::common::Backend) $body
            #[test]
            fn sqlite() {
                body($crate::common::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                body($crate::common::Backend::Postgres)
            }
        }
    };
}

impl Folder {
    /// An empty folder.
    pub fn empty() -> Folder {
        Folder {
            dir: tempfile::tempdir().expect("temporary folder"),
            database: None,
        }
    }

    /// This folder with its journal on `backend`. On PostgreSQL, a fresh
    /// database of the test cluster: its relance.yaml names it (and keeps
    /// naming it when the test writes one of its own), and every command
    /// gets its URL in RELANCE_DATABASE_URL.
    pub fn on(mut self, backend: Backend) -> Folder {
        if backend == Backend::Postgres {
            self.database = Some(postgres::database());
            let config = self.path().join("relance.yaml");
            let text = std::fs::read_to_string(&config).unwrap_or_default();
            self.write("relance.yaml", &text);
        }
        self
    }

    /// The PostgreSQL database of its journal, if it has one.
    pub fn database(&self) -> Option<&postgres::Database> {
        self.database.as_ref()
    }

    /// A copy of the sample folder shipped at the root of the repository.
    pub fn sample() -> Folder {
        let folder = Folder::empty();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for sub in ["rules", "templates", "data"] {
            copy_dir(&repo.join(sub), &folder.path().join(sub));
        }
        std::fs::copy(
            repo.join("relance.yaml"),
            folder.path().join("relance.yaml"),
        )
        .expect("copy relance.yaml");
        folder
    }

    /// The shipped sample with the contract's defaults instead of the
    /// considerate keys the sample sets (issue 14): without `contact` (each
    /// reminder its own message, no gap between two), `first_contact` (the
    /// contract's `latest`: an invoice already far overdue at the first
    /// evaluation catches up with the latest stage it reached, the earlier
    /// ones skipped) and the stages' `approve:` (the formal notice and the
    /// collection hand-off go out without a person's approval). For the
    /// tests whose point is the contract's behaviour on a rich folder (the
    /// first run writes letters, calls and tasks, a reminder per message);
    /// the sample as shipped has tests of its own beside them.
    pub fn sample_with_contract_defaults() -> Folder {
        let folder = Folder::sample();
        for key in ["contact:", "first_contact:"] {
            assert_eq!(
                folder.remove_lines("relance.yaml", key),
                1,
                "the sample's relance.yaml sets `{key}` once"
            );
        }
        let approvals: usize = ["rules/standard.yaml", "rules/habitual_late.yaml"]
            .iter()
            .map(|policy| folder.remove_lines(policy, "approve:"))
            .sum();
        assert!(approvals > 0, "the sample's policies ask for approvals");
        folder
    }

    /// Removes the lines of `rel` that start (indentation aside) with
    /// `key`; returns how many there were.
    fn remove_lines(&self, rel: &str, key: &str) -> usize {
        let text = self.read(rel);
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with(key))
            .collect();
        self.write(rel, &format!("{}\n", kept.join("\n")));
        text.lines().count() - kept.len()
    }

    /// The shipped rules and templates with a config and feed of the test's
    /// own; without the shipped policy tests, which hold under the shipped
    /// config only (its language, currency and calendar).
    pub fn shipped_rules() -> Folder {
        let folder = Folder::empty();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for sub in ["rules", "templates"] {
            copy_dir(&repo.join(sub), &folder.path().join(sub));
        }
        for entry in std::fs::read_dir(folder.path().join("rules")).expect("rules") {
            let path = entry.expect("entry").path();
            if path.to_string_lossy().ends_with(".test.yaml") {
                std::fs::remove_file(&path).expect("remove a policy test");
            }
        }
        folder
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating its folders), relative to the folder.
    pub fn write(&self, rel: &str, content: &str) -> &Folder {
        // A test that sets its own PostgreSQL journal line keeps it.
        if rel == "relance.yaml"
            && self.database.is_some()
            && !content.contains("journal: {url_env")
        {
            // Its own `journal:` line (the sample's names the SQLite file)
            // gives way to the database's.
            let mut text: String = content
                .lines()
                .filter(|l| !l.starts_with("journal:"))
                .map(|l| format!("{l}\n"))
                .collect();
            text.push_str(POSTGRES_JOURNAL);
            text.push('\n');
            return self.write_as_is(rel, &text);
        }
        self.write_as_is(rel, content)
    }

    /// Writes a file exactly as given.
    fn write_as_is(&self, rel: &str, content: &str) -> &Folder {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create folders");
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self
    }

    pub fn read(&self, rel: &str) -> String {
        let path = self.path().join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn remove(&self, rel: &str) {
        let path = self.path().join(rel);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove folder");
        } else {
            std::fs::remove_file(&path).expect("remove file");
        }
    }

    /// The files of a subfolder, sorted by name (empty when it does not exist).
    pub fn files(&self, rel: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.path().join(rel))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    }

    /// `relance --dir FOLDER ARGS…`, with the log level pinned.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = relance_logging_info();
        cmd.arg("--dir").arg(self.path()).args(args);
        self.database_env(&mut cmd);
        cmd
    }

    /// Gives `cmd` the URL of the folder's database, if it has one.
    pub fn database_env(&self, cmd: &mut Command) {
        if let Some(db) = &self.database {
            cmd.env(postgres::URL_ENV, &db.url);
        }
    }

    /// `relance ARGS…` run from inside the folder, as a person types it
    /// there (the paths it prints are relative), with the log level pinned.
    pub fn command_inside(&self, args: &[&str]) -> Command {
        let mut cmd = relance_logging_info();
        cmd.current_dir(self.path()).args(args);
        self.database_env(&mut cmd);
        cmd
    }

    /// Runs `relance --dir FOLDER ARGS…` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run relance").into()
    }

    /// Runs `relance ARGS…` from inside the folder to completion.
    pub fn run_inside(&self, args: &[&str]) -> Run {
        self.command_inside(args)
            .output()
            .expect("run relance")
            .into()
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
/// Tests wait on a condition with a deadline, never on a bare sleep.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that `text` contains `part`, showing `text` when it does not.
#[track_caller]
pub fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} is not in:\n{text}");
}

/// Asserts that `text` starts with `prefix`, showing `text` when it does not.
#[track_caller]
pub fn assert_starts_with(text: &str, prefix: &str) {
    assert!(
        text.starts_with(prefix),
        "{prefix:?} does not start:\n{text}"
    );
}

/// Asserts that `text` ends with `suffix`, showing `text` when it does not.
#[track_caller]
pub fn assert_ends_with(text: &str, suffix: &str) {
    assert!(text.ends_with(suffix), "{suffix:?} does not end:\n{text}");
}

/// A minimal valid policy file with the given stages (YAML flow mappings).
pub fn policy(name: &str, stages: &[&str]) -> String {
    let mut s = format!("name: {name}\nstages:\n");
    for stage in stages {
        s.push_str(&format!("  - {stage}\n"));
    }
    s
}

/// A template file with a subject and a body.
pub fn template(subject: &str, body: &str) -> String {
    format!("---\nsubject: \"{subject}\"\n---\n{body}\n")
}

/// The header of a canonical CSV feed.
pub const CSV_HEADER: &str = "number,customer_id,customer_name,email,issue_date,due_date,amount,amount_paid,currency,status,paid_date,language,tags,promise_date";

/// One row of a canonical CSV feed: a value for each column of [`CSV_HEADER`].
#[derive(Clone)]
pub struct Inv(Vec<String>);

/// An open invoice of `amount` issued on its due date `due`, with its own
/// customer (`C-NUMBER`, `Customer NUMBER`) and address; every other column empty.
pub fn inv(number: &str, due: &str, amount: &str) -> Inv {
    Inv(vec![String::new(); CSV_HEADER.split(',').count()])
        .with("number", number)
        .customer(&format!("C-{number}"), &format!("Customer {number}"))
        .with("email", &format!("{}@example.com", number.to_lowercase()))
        .with("issue_date", due)
        .with("due_date", due)
        .with("amount", amount)
}

impl Inv {
    /// The row with `value` in `column` (a column of [`CSV_HEADER`]).
    pub fn with(mut self, column: &str, value: &str) -> Inv {
        let index = CSV_HEADER
            .split(',')
            .position(|c| c == column)
            .unwrap_or_else(|| panic!("{column} is not a column of the canonical feed"));
        self.0[index] = value.to_string();
        self
    }

    /// Billed to customer `id` named `name`.
    pub fn customer(self, id: &str, name: &str) -> Inv {
        self.with("customer_id", id).with("customer_name", name)
    }

    /// Settled on `date` (status paid).
    pub fn settled(self, date: &str) -> Inv {
        self.with("status", "paid").with("paid_date", date)
    }
}

/// A canonical CSV feed of these rows, written by the `csv` crate.
pub fn csv(rows: &[Inv]) -> String {
    csv_delimited(rows, b',')
}

/// Like [`csv`], with another field delimiter (e.g. `b';'`, as spreadsheets export).
pub fn csv_delimited(rows: &[Inv], delimiter: u8) -> String {
    let mut writer = ::csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(Vec::new());
    writer
        .write_record(CSV_HEADER.split(','))
        .expect("write the header");
    for row in rows {
        writer.write_record(&row.0).expect("write a row");
    }
    String::from_utf8(writer.into_inner().expect("flush the feed")).expect("UTF-8")
}

/// Runs `git ARGS…` in `dir` (no user config), failing the test with what
/// git said; without git, the test fails saying how to install it.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "these tests need the git command line tool ({e}); install git: apt-get install git"
            )
        });
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// Helpers for the daemon and delivery tests (tests/daemon.rs, tests/delivery.rs).
// ---------------------------------------------------------------------------

/// Long enough for anything that has no deadline of its own on a busy machine.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The evaluation date of the small folders below: the day after their
/// invoices' due date, when the `overdue` stage fires.
pub const AS_OF: &str = "2026-12-01";

/// `relance run --once --as-of AS_OF`: one evaluation, then exit.
pub const RUN_ONCE: [&str; 4] = ["run", "--once", "--as-of", AS_OF];

/// `relance run --as-of AS_OF`: the daemon.
pub const DAEMON: [&str; 3] = ["run", "--as-of", AS_OF];

/// A small folder for daemon tests: `config` (YAML lines, e.g. a `delivery:`)
/// after a sender identity, one policy `dunning` whose single stage `overdue`
/// (email, template `overdue`) fires the day after the due date, an English
/// template, and the given invoices (see [`invoice_row`]).
pub fn dunning_folder(config: &str, invoices: &[Inv]) -> Folder {
    let folder = Folder::empty();
    folder
        .write(
            "relance.yaml",
            &format!(
                "language: en\ncompany: {{name: \"Atelier Durand\", email: \"compta@atelier-durand.fr\"}}\n{config}\n"
            ),
        )
        .write(
            "rules/dunning.yaml",
            &policy("dunning", &["{id: overdue, offset: 1, template: overdue}"]),
        )
        .write(
            "templates/overdue.en.hbs",
            &template(
                "Invoice {{invoice.number}} is overdue",
                "Dear {{customer.name}},\nplease pay {{money invoice.amount_due}}.",
            ),
        );
    folder.write_invoices(invoices);
    folder
}

/// An open invoice of 100.00 EUR in English, issued on 2026-11-01 and due on
/// 2026-11-30 (so overdue on [`AS_OF`]).
pub fn invoice_row(number: &str, customer_name: &str, email: &str) -> Inv {
    inv(number, "2026-11-30", "100.00")
        .with("customer_name", customer_name)
        .with("email", email)
        .with("issue_date", "2026-11-01")
        .with("amount_paid", "0")
        .with("currency", "EUR")
        .with("status", "open")
        .with("language", "en")
}

/// `n` invoices F001…, each with its own customer and address.
pub fn invoices(n: usize) -> Vec<Inv> {
    (1..=n)
        .map(|i| {
            invoice_row(
                &format!("F{i:03}"),
                &format!("Customer {i}"),
                &format!("c{i}@example.com"),
            )
        })
        .collect()
}

impl Folder {
    /// Replaces `data/invoices.csv` (the default feed) with these rows.
    pub fn write_invoices(&self, rows: &[Inv]) -> &Folder {
        self.write("data/invoices.csv", &csv(rows))
    }

    /// Every row of the journal (`state/relance.db`, or the folder's
    /// PostgreSQL database), in insertion order.
    pub fn journal(&self) -> Vec<JournalRow> {
        const SELECT: &str = "SELECT invoice, policy, stage, occurrence, state, date, channel, \
             recipient, subject, message_id, attempts, last_error, next_try_at FROM reminder ORDER BY id";
        if let Some(db) = &self.database {
            let rows = db.client().query(SELECT, &[]).expect("read the journal");
            return rows
                .iter()
                .map(|r| JournalRow {
                    invoice: r.get(0),
                    policy: r.get(1),
                    stage: r.get(2),
                    occurrence: r.get::<_, i64>(3) as u32,
                    state: r.get(4),
                    date: r.get(5),
                    channel: r.get(6),
                    recipient: r.get(7),
                    subject: r.get(8),
                    message_id: r.get(9),
                    attempts: r.get::<_, i64>(10) as u32,
                    last_error: r.get(11),
                    next_try_at: r.get(12),
                })
                .collect();
        }
        let conn = rusqlite::Connection::open_with_flags(
            self.path().join("state/relance.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .expect("the journal exists");
        let mut stmt = conn
            .prepare(SELECT)
            .expect("the journal has a reminder table");
        let rows = stmt
            .query_map([], |r| {
                Ok(JournalRow {
                    invoice: r.get(0)?,
                    policy: r.get(1)?,
                    stage: r.get(2)?,
                    occurrence: r.get(3)?,
                    state: r.get(4)?,
                    date: r.get(5)?,
                    channel: r.get(6)?,
                    recipient: r.get(7)?,
                    subject: r.get(8)?,
                    message_id: r.get(9)?,
                    attempts: r.get(10)?,
                    last_error: r.get(11)?,
                    next_try_at: r.get(12)?,
                })
            })
            .expect("read the journal");
        rows.map(|r| r.expect("a journal row")).collect()
    }

    /// The journal's states by invoice number, e.g. `[("F001", "sent")]`.
    pub fn journal_states(&self) -> Vec<(String, String)> {
        self.journal()
            .into_iter()
            .map(|r| (r.invoice, r.state))
            .collect()
    }

    /// Sets the journal row of `invoice` to `state` and `owner`, as a crash
    /// would have left it (a `failed` row is due for its retry).
    pub fn rewind(&self, invoice: &str, state: &str, owner: u32) {
        if let Some(db) = &self.database {
            let changed = db
                .client()
                .execute(
                    // Its claim expired: the instance that held it is gone.
                    "UPDATE reminder SET state = $2, owner = $3,
                            next_try_at = CASE WHEN $2 = 'failed' THEN '2000-01-01T00:00:00.000Z' END,
                            claimed_by = 'gone', claimed_until = now() - interval '1 second'
                     WHERE invoice = $1 AND state != 'skipped'",
                    &[&invoice, &state, &i64::from(owner)],
                )
                .expect("update the journal");
            assert_eq!(changed, 1, "one reminder of {invoice} in the journal");
            return;
        }
        let changed = rusqlite::Connection::open(self.path().join("state/relance.db"))
            .expect("open the journal")
            .execute(
                "UPDATE reminder SET state = ?2, owner = ?3,
                        next_try_at = CASE ?2 WHEN 'failed' THEN '2000-01-01T00:00:00.000Z' END
                 WHERE invoice = ?1 AND state != 'skipped'",
                rusqlite::params![invoice, state, owner],
            )
            .expect("update the journal");
        assert_eq!(changed, 1, "one reminder of {invoice} in the journal");
    }

    /// Starts `relance --dir FOLDER ARGS…` in the background (the daemon).
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        Spawned::start(self.command(args))
    }
}

/// One row of the journal, as a test reads it (from either backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    pub invoice: String,
    pub policy: String,
    pub stage: String,
    pub occurrence: u32,
    pub state: String,
    pub date: String,
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    pub message_id: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_try_at: Option<String>,
}

/// A `relance` process running in the background, killed (and reaped) when
/// dropped. Its stderr log is read line by line on a thread, so that a test
/// waits for a log line with a deadline instead of sleeping.
pub struct Spawned {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every log line read so far.
    pub log: Vec<String>,
}

impl Spawned {
    pub fn start(command: Command) -> Spawned {
        Spawned::reading(command, false)
    }

    /// Like [`Spawned::start`] for a program that logs to stdout rather
    /// than stderr (chromedriver): its stdout is the log read line by line.
    pub fn start_logging_to_stdout(command: Command) -> Spawned {
        Spawned::reading(command, true)
    }

    fn reading(mut command: Command, stdout: bool) -> Spawned {
        use std::io::BufRead;
        use std::process::Stdio;
        let (out, err) = if stdout {
            (Stdio::piped(), Stdio::null())
        } else {
            (Stdio::null(), Stdio::piped())
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", command.get_program()));
        let log: Box<dyn std::io::Read + Send> = match (child.stdout.take(), child.stderr.take()) {
            (Some(stdout), _) => Box::new(stdout),
            (None, stderr) => Box::new(stderr.expect("piped stderr")),
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(log).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            lines,
            log: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next log line matching `wanted`, waiting at most `timeout`; `None`
    /// when the deadline passes or the process closes its stderr first.
    pub fn next_line(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.log.push(line.clone());
            if wanted(&line) {
                return Some(line);
            }
        }
    }

    /// Like [`Spawned::next_line`], but a missing line fails the test with the log so far.
    pub fn expect_line(
        &mut self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        self.next_line(timeout, wanted).unwrap_or_else(|| {
            panic!(
                "no log line {what} within {timeout:?}; the log so far:\n{}",
                self.log.join("\n")
            )
        })
    }

    /// Waits (at most [`DEADLINE`]) for the log line of the web console
    /// listening, and returns its base URL (`http://127.0.0.1:PORT`).
    pub fn expect_console(&mut self) -> String {
        let line = self.expect_line(DEADLINE, "with the console's address", |l| {
            l.contains("console listening on http://")
        });
        let start = line.find("http://").expect("an address");
        let url = line[start..].split_whitespace().next().expect("a URL");
        url.trim_end_matches(['/', '"']).to_string()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Kills the process with SIGKILL, as a crash or a power cut would, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap the killed process");
    }

    /// Waits for the process to exit (at most `timeout`), reading the rest of its log.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut status = None;
        let exited = wait_until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        assert!(
            exited,
            "relance did not exit within {timeout:?}; the log:\n{}",
            self.log.join("\n")
        );
        // The process is gone: its stderr ends, and the reader thread with it.
        self.log.extend(self.lines.iter());
        status.expect("an exit status")
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits (at most [`DEADLINE`]) for the log line of a finished evaluation,
    /// the first one when the daemon has just started, and returns it.
    pub fn expect_evaluation(&mut self) -> String {
        self.expect_line(DEADLINE, "for the evaluation", |l| {
            l.contains("evaluation done")
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The pid of a process that has exited: the owner of a reminder a crash
/// left `planned`.
pub fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    child.id()
}

/// How long the tests of several daemons wait for a thousand reminders
/// (debug builds, a machine shared with other tests).
pub const BATCH_DEADLINE: Duration = Duration::from_secs(180);

impl Folder {
    /// How many reminders of the folder's PostgreSQL journal are in `state`
    /// (0 while the database cannot be reached, as when it restarts).
    pub fn count_in_state(&self, state: &str) -> i64 {
        let db = self.database().expect("a folder on PostgreSQL");
        ::postgres::Client::connect(&db.url, ::postgres::NoTls)
            .and_then(|mut c| {
                c.query_one("SELECT COUNT(*) FROM reminder WHERE state = $1", &[&state])
            })
            .map(|row| row.get(0))
            .unwrap_or(0)
    }

    /// `n` daemons (`relance run --as-of AS_OF`) on the folder.
    pub fn spawn_daemons(&self, n: usize) -> Vec<Spawned> {
        (0..n).map(|_| self.spawn(&DAEMON)).collect()
    }
}
