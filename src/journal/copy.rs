//! `relance journal copy`: an SQLite journal moved into an empty PostgreSQL one, checked by counts and a checksum.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Cells, Journal, Store, Value};
use crate::error::{Error, Result};

/// Every column of a row, the id first: a copy keeps all of them, so that
/// the order of the journal and every retry, owner and time stay as they were.
const COLUMNS: &str = "id, invoice, policy, stage, occurrence, state, date, channel, recipient, \
     subject, message_id, attempts, last_error, next_try_at, owner, created_at, updated_at, \
     message, customer_id";

/// How many columns [`COLUMNS`] names.
const WIDTH: usize = 19;

/// The positions in [`COLUMNS`] of the integers.
const INTEGERS: [usize; 4] = [0, 4, 11, 14];

/// One column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

impl Cell {
    fn value(&self) -> Value<'_> {
        match self {
            Cell::Text(text) => Value::Text(text.as_deref()),
            Cell::Int(n) => Value::Int(*n),
        }
    }
}

/// What a copy did: how many rows of each state went over, and the
/// checksum of the rows read back from each side (equal, or the copy fails).
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    pub rows: usize,
    pub by_state: BTreeMap<String, usize>,
    /// SHA-256 over every column of every row, in journal order, of the source.
    pub source_checksum: String,
    /// The same, read back from PostgreSQL after the copy.
    pub copy_checksum: String,
}

/// The counts and checksum of `rows`.
fn summary(rows: &[Vec<Cell>]) -> (BTreeMap<String, usize>, String) {
    let mut by_state = BTreeMap::new();
    let mut sum = Sha256::new();
    for row in rows {
        if let Some(Cell::Text(Some(state))) = row.get(5) {
            *by_state.entry(state.clone()).or_default() += 1;
        }
        // Each cell with its length: no two rows write the same bytes.
        for cell in row {
            match cell {
                Cell::Text(Some(text)) => sum.update(format!("t{}:{text}", text.len())),
                Cell::Int(Some(n)) => sum.update(format!("i{n};")),
                Cell::Text(None) | Cell::Int(None) => sum.update("n;"),
            }
        }
        sum.update("\n");
    }
    let hex = sum.finalize().iter().fold(String::new(), |mut out, b| {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
        out
    });
    (by_state, hex)
}

impl Journal {
    /// Copies every row of this journal into `to`, a PostgreSQL journal
    /// that must hold none, in one transaction; then reads both back and
    /// compares their counts and checksums.
    pub fn copy_to(&self, to: &Journal) -> Result<Copied> {
        let Store::Postgres(target) = &to.store else {
            return Err(Error::Refused(
                "journal copy: the target must be a PostgreSQL journal".into(),
            ));
        };
        if !target.is_empty()? {
            return Err(Error::Refused(format!(
                "journal copy: {} already holds reminders: a journal is copied into an empty one \
                 only (nothing is merged); empty it or choose another database",
                target.place()
            )));
        }
        let rows = self.every_row()?;
        let placeholders: Vec<String> = (1..=WIDTH).map(|i| format!("?{i}")).collect();
        let insert = format!(
            "INSERT INTO reminder ({COLUMNS}) OVERRIDING SYSTEM VALUE VALUES ({})",
            placeholders.join(", ")
        );
        let tx = to.begin()?;
        for row in &rows {
            let values: Vec<Value> = row.iter().map(Cell::value).collect();
            to.store.execute(&insert, &values)?;
        }
        // New rows are numbered after the copied ones.
        target.execute_raw(
            "SELECT setval(pg_get_serial_sequence('reminder', 'id'), \
             GREATEST((SELECT MAX(id) FROM reminder), 1))",
            &[],
        )?;
        tx.commit()?;
        let copied = to.every_row()?;
        let (by_state, source_checksum) = summary(&rows);
        let (copied_states, copy_checksum) = summary(&copied);
        if copied.len() != rows.len()
            || copied_states != by_state
            || copy_checksum != source_checksum
        {
            return Err(Error::Refused(format!(
                "journal copy: {} differs from the source after the copy ({} rows read back of {}, \
                 checksum {copy_checksum} against {source_checksum}): do not switch to it",
                target.place(),
                copied.len(),
                rows.len()
            )));
        }
        Ok(Copied {
            rows: rows.len(),
            by_state,
            source_checksum,
            copy_checksum,
        })
    }

    /// Every row with every column, in the order they were journaled.
    fn every_row(&self) -> Result<Vec<Vec<Cell>>> {
        self.rows(
            &format!("SELECT {COLUMNS} FROM reminder ORDER BY id"),
            &[],
            |r: &dyn Cells| {
                (0..WIDTH)
                    .map(|i| match INTEGERS.contains(&i) {
                        true => r.opt_int(i).map(Cell::Int),
                        false => r.opt_text(i).map(Cell::Text),
                    })
                    .collect()
            },
        )
    }
}
