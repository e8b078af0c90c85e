//! What `relance approve` and `relance reject` did: a line per invoice.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::journal::Identity;

/// The reminders that `relance approve` or `reject` decided (`verb`:
/// `approved`, `rejected`) for the invoice named (`None`: `--all`), a line
/// per invoice: the named one first, then the invoices its messages carry
/// too (a message is approved whole); with `--all`, the total last.
pub fn write(
    out: &mut dyn Write,
    named: Option<&str>,
    decided: &[Identity],
    verb: &str,
) -> io::Result<()> {
    let mut by_invoice: BTreeMap<&str, usize> = BTreeMap::new();
    for identity in decided {
        *by_invoice.entry(&identity.invoice).or_default() += 1;
    }
    if let Some(n) = named.and_then(|named| by_invoice.remove(named)) {
        writeln!(out, "{}: {n} reminder(s) {verb}", named.unwrap_or_default())?;
    }
    for (invoice, n) in by_invoice {
        match named {
            Some(named) => writeln!(
                out,
                "{invoice}: {n} reminder(s) {verb} (in one message with {named})"
            )?,
            None => writeln!(out, "{invoice}: {n} reminder(s) {verb}")?,
        }
    }
    if named.is_none() {
        writeln!(out, "{} reminder(s) {verb}", decided.len())?;
    }
    Ok(())
}
