//! The journal in an SQLite file: one daemon on one machine (the default).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{Cells, SCHEMA_VERSION, Value, intern};
use crate::error::{Error, Result};

/// One step of the journal's schema.
pub(super) enum Migration {
    /// SQL run as written.
    Sql(&'static str),
    /// The table `reminder` built again with this text of its `CREATE TABLE`
    /// replaced (from, to): the way to change a constraint, which SQLite's
    /// `ALTER TABLE` cannot. The statement is the one SQLite holds, so the
    /// columns added by the steps before are kept, whatever they are.
    Rebuild(&'static str, &'static str),
}

/// Migrations, in order; `user_version` records how many have run.
/// PostgreSQL's (`postgres.rs`) are numbered the same.
pub(super) const MIGRATIONS: [Migration; 5] = [
    Migration::Sql(
        "CREATE TABLE reminder (
        id          INTEGER PRIMARY KEY,
        invoice     TEXT NOT NULL,
        policy      TEXT NOT NULL,
        stage       TEXT NOT NULL,
        occurrence  INTEGER NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('planned', 'sent', 'failed', 'skipped')),
        date        TEXT NOT NULL,
        channel     TEXT NOT NULL DEFAULT '',
        recipient   TEXT NOT NULL DEFAULT '',
        subject     TEXT NOT NULL DEFAULT '',
        message_id  TEXT NOT NULL DEFAULT '',
        attempts    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        next_try_at TEXT,
        owner       INTEGER,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        UNIQUE (invoice, policy, stage, occurrence)
    );
    CREATE INDEX reminder_invoice ON reminder (invoice);",
    ),
    // The token of the message a reminder went out in: a customer's
    // reminders of a day grouped into one email share it, and after a crash
    // it names the file that proves the message was delivered.
    Migration::Sql("ALTER TABLE reminder ADD COLUMN message TEXT NOT NULL DEFAULT '';"),
    // Reminders of a stage with `approve: true` wait for a person.
    Migration::Rebuild("'skipped')", "'skipped', 'awaiting_approval', 'approved')"),
    // The customer a reminder was for: a customer's history keeps the
    // invoices that have left the feeds. Rows from before stay NULL.
    Migration::Sql(
        "ALTER TABLE reminder ADD COLUMN customer_id TEXT;
        CREATE INDEX reminder_customer ON reminder (customer_id);",
    ),
    // Which daemon delivers a reminder, and until when its claim holds:
    // several daemons share a PostgreSQL journal. One daemon has an SQLite
    // journal and leaves them empty; the columns keep the numbering, and
    // the statements, of both backends the same.
    Migration::Sql(
        "ALTER TABLE reminder ADD COLUMN claimed_by TEXT;
        ALTER TABLE reminder ADD COLUMN claimed_until TEXT;",
    ),
];

/// How long a process waits for another one's lock on the journal.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) struct Db {
    pub(super) conn: Connection,
    /// Named in every error, so an operator knows which file to look at.
    path: PathBuf,
}

impl Db {
    /// Opens the journal for reading only; `None` when it does not exist yet
    /// (a preview must not create it).
    pub(super) fn open_read_only(path: &Path) -> Result<Option<Db>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        );
        let db = Db {
            conn: conn.map_err(|cause| fail(path, cause))?,
            path: path.to_path_buf(),
        };
        let version = db.version()?;
        Ok((version > 0).then_some(db))
    }

    /// Opens (creating it and its folder if needed) and migrates the journal.
    ///
    /// SQLite answers `database is locked` at once, without waiting for the
    /// busy timeout, to a connection that switches a new journal to WAL while
    /// another process does the same; several runs started together on a new
    /// folder do exactly that. The whole opening is idempotent, so it is tried
    /// again for as long as the busy timeout would have waited.
    pub(super) fn open(path: &Path) -> Result<Db> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            match Db::open_once(path) {
                Err(Error::Journal { cause, .. })
                    if is_busy(&cause) && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let db = Db {
            conn: Connection::open(path).map_err(|cause| fail(path, cause))?,
            path: path.to_path_buf(),
        };
        // WAL lets `preview` and `history` read while the daemon writes; FULL sync
        // makes a committed `sent` survive a power cut.
        let conn = &db.conn;
        // The busy timeout first: several processes starting at once wait
        // for each other's lock instead of failing.
        db.sql(conn.busy_timeout(BUSY_TIMEOUT))?;
        db.sql(conn.pragma_update(None, "journal_mode", "WAL"))?;
        db.sql(conn.pragma_update(None, "synchronous", "FULL"))?;
        // An up-to-date journal is opened without the write lock: another
        // process holding it (a long batch) must not stop this one from
        // starting. A migration reads the version again under the lock, so
        // that of several processes opening a new journal at once one
        // creates the tables and the others find them (not `table reminder
        // already exists`).
        if db.version()? < SCHEMA_VERSION {
            let tx = db.sql(rusqlite::Transaction::new_unchecked(
                conn,
                TransactionBehavior::Immediate,
            ))?;
            let version = db.version()?;
            for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                db.migrate(&tx, migration)?;
                db.sql(tx.pragma_update(None, "user_version", (i + 1) as i64))?;
            }
            db.sql(tx.commit())?;
        }
        Ok(db)
    }

    /// Runs one migration inside the transaction `tx`.
    fn migrate(&self, tx: &rusqlite::Transaction, migration: &Migration) -> Result<()> {
        let (from, to) = match migration {
            Migration::Sql(sql) => return self.sql(tx.execute_batch(sql)),
            Migration::Rebuild(from, to) => (from, to),
        };
        let create: String = self.sql(tx.query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'reminder'",
            [],
            |r| r.get(0),
        ))?;
        // After a rename SQLite writes the name quoted: everything up to
        // the column list is written anew.
        let columns = create.find('(').map(|at| &create[at..]);
        let Some(columns) = columns.filter(|c| c.contains(from)) else {
            return Err(Error::Refused(format!(
                "{}: cannot migrate the journal: its table `reminder` has no {from}",
                self.path.display()
            )));
        };
        // Dropping the table drops its indexes: they are made again after.
        let indexes: Vec<String> = {
            let mut stmt = self.sql(tx.prepare(
                "SELECT sql FROM sqlite_master \
                 WHERE type = 'index' AND tbl_name = 'reminder' AND sql IS NOT NULL",
            ))?;
            self.sql(self.sql(stmt.query_map([], |r| r.get(0)))?.collect())?
        };
        let mut script = format!(
            "CREATE TABLE reminder_rebuilt {};
             INSERT INTO reminder_rebuilt SELECT * FROM reminder;
             DROP TABLE reminder;
             ALTER TABLE reminder_rebuilt RENAME TO reminder;",
            columns.replacen(from, to, 1)
        );
        for index in indexes {
            script.push_str(&index);
            script.push(';');
        }
        self.sql(tx.execute_batch(&script))
    }

    /// The schema version, refused when a newer relance wrote it.
    pub(super) fn version(&self) -> Result<i64> {
        let version: i64 =
            self.sql(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)))?;
        if version > SCHEMA_VERSION {
            return Err(Error::JournalTooNew {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(version)
    }

    /// Whether the table has its customers (schema version 4): `history`
    /// reads an older journal without migrating it.
    pub(super) fn has_customers(&self) -> Result<bool> {
        self.sql(self.conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('reminder') WHERE name = 'customer_id'",
            [],
            |r| r.get(0),
        ))
    }

    /// An SQLite result with the journal's file named in its error.
    fn sql<T>(&self, result: rusqlite::Result<T>) -> Result<T> {
        result.map_err(|cause| fail(&self.path, cause))
    }

    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        self.sql(self.conn.execute_batch(sql))
    }

    pub(super) fn execute(&self, sql: &str, values: &[Value]) -> Result<usize> {
        let mut stmt = self.sql(self.conn.prepare_cached(sql))?;
        self.sql(stmt.execute(rusqlite::params_from_iter(values)))
    }

    pub(super) fn query(
        &self,
        sql: &str,
        values: &[Value],
        each: &mut dyn FnMut(&dyn Cells) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.sql(self.conn.prepare_cached(sql))?;
        let mut rows = self.sql(stmt.query(rusqlite::params_from_iter(values)))?;
        while let Some(row) = self.sql(rows.next())? {
            each(&Row {
                row,
                path: &self.path,
            })?;
        }
        Ok(())
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Value::Text(Some(text)) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Value::Int(Some(n)) => ToSqlOutput::Borrowed(ValueRef::Integer(n)),
            Value::Text(None) | Value::Int(None) => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// A row SQLite read.
struct Row<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    path: &'r Path,
}

impl Row<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, i: usize) -> Result<T> {
        self.row.get(i).map_err(|cause| fail(self.path, cause))
    }
}

impl Cells for Row<'_, '_> {
    fn text(&self, i: usize) -> Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.get(i)
    }
    fn int(&self, i: usize) -> Result<i64> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.get(i)
    }
    fn shared(&self, i: usize, names: &mut Vec<Arc<str>>) -> Result<Arc<str>> {
        let text = self
            .row
            .get_ref(i)
            .map_err(|cause| fail(self.path, cause))?;
        Ok(intern(names, text.as_str().unwrap_or_default()))
    }
}

/// Whether SQLite refused because another connection holds a lock.
fn is_busy(cause: &rusqlite::Error) -> bool {
    matches!(cause, rusqlite::Error::SqliteFailure(e, _)
        if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// An SQLite error on the journal at `path`.
fn fail(path: &Path, cause: rusqlite::Error) -> Error {
    Error::Journal {
        path: path.to_path_buf(),
        cause,
    }
}
