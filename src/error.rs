//! The library's one error type: what stops an operation, as opposed to the [`Problem`]s loading collects and goes on after.
//!
//! Each variant's text is whole (it includes its cause's text), so the
//! command line prints it as it is, once.

use std::path::PathBuf;

use crate::diagnostics::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file relance cannot use at all, located (`relance.yaml:3:1: …`).
    #[error("{0}")]
    Problem(Box<Problem>),
    /// The daemon will not start or go on; the text says what to fix.
    #[error("{0}")]
    Refused(String),
    #[error("{path}: journal: {cause}")]
    Journal {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    /// The PostgreSQL journal: where (the variable and the server, never
    /// the password), what went wrong, and whether trying again may help
    /// (the connection was lost).
    #[error("{place}: journal: {message}")]
    Database {
        place: String,
        message: String,
        transient: bool,
    },
    #[error(
        "{path}: journal schema version {found} is newer than this relance understands ({supported})"
    )]
    JournalTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// Delivery cannot be set up (SMTP settings, the sender address).
    #[error("delivery: {0}")]
    Delivery(String),
    #[error("watching {path}: {cause}")]
    Watch { path: PathBuf, cause: notify::Error },
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    /// `preview --baseline`: the baseline cannot be used (a missing folder,
    /// no git, a revision git does not know).
    #[error("--baseline {spec}: {message}")]
    Baseline { spec: String, message: String },
    #[error("invoice {0} is not in the feeds")]
    UnknownInvoice(String),
    /// The web console cannot start (an address it cannot listen on).
    #[error("console: {0}")]
    Console(String),
    /// The web console would listen beyond this machine with no token to
    /// protect it: a usage error (exit 2), the text says what to set.
    #[error("{0}")]
    Unprotected(String),
    /// `rules/holds.yaml` changed (a hand edit, another page) since the
    /// version a form was filled from: nothing was written.
    #[error(
        "{path}: changed since it was read (edited by hand or from another page): nothing was written; read it again and redo the change"
    )]
    HoldsChanged { path: PathBuf },
    #[error(
        "no hold has the id {id:?} in rules/holds.yaml (it was removed, or the file was edited)"
    )]
    HoldNotFound { id: String },
    /// A hold or promise that cannot be recorded as asked.
    #[error("invalid hold or promise: {message}")]
    InvalidHold { message: String },
    /// Writing the results (a closed pipe: `relance history | head`).
    #[error("writing the output: {0}")]
    Output(std::io::Error),
}

impl Error {
    /// Whether trying again in a moment may succeed: another process holds
    /// the journal's lock for longer than the busy timeout, or the connection to
    /// the PostgreSQL journal was lost. The daemon waits
    /// and goes on rather than stopping.
    pub fn is_transient(&self) -> bool {
        if let Error::Database { transient, .. } = self {
            return *transient;
        }
        matches!(
            self,
            Error::Journal {
                cause: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

impl From<Problem> for Error {
    fn from(problem: Problem) -> Self {
        Error::Problem(Box::new(problem))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: rusqlite::ErrorCode) -> Error {
        Error::Journal {
            path: "state/relance.db".into(),
            cause: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error {
                    code,
                    extended_code: 0,
                },
                None,
            ),
        }
    }

    #[test]
    fn a_busy_or_locked_journal_is_transient_and_nothing_else_is() {
        assert!(sqlite(rusqlite::ErrorCode::DatabaseBusy).is_transient());
        assert!(sqlite(rusqlite::ErrorCode::DatabaseLocked).is_transient());
        assert!(!sqlite(rusqlite::ErrorCode::DatabaseCorrupt).is_transient());
        assert!(!Error::Refused("no".into()).is_transient());
        let text = sqlite(rusqlite::ErrorCode::DatabaseCorrupt).to_string();
        assert!(text.starts_with("state/relance.db: journal: "), "{text}");
    }
}
