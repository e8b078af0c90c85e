//! What `relance journal copy` did: the rows copied by state, and the checksums of both sides.

use std::io::{self, Write};

use crate::journal::Copied;

/// The copy's counts and checksums, one fact a line, so that an operator
/// can keep them with the switch's record.
pub fn write(out: &mut dyn Write, from: &str, to: &str, copied: &Copied) -> io::Result<()> {
    writeln!(
        out,
        "copied {} reminder(s) from {from} to {to}",
        copied.rows
    )?;
    for (state, n) in &copied.by_state {
        writeln!(out, "  {state}: {n}")?;
    }
    writeln!(out, "checksum of {from}: {}", copied.source_checksum)?;
    writeln!(out, "checksum of the copy: {}", copied.copy_checksum)?;
    writeln!(
        out,
        "the copy matches: set `journal: {{url_env: …}}` in relance.yaml and start the daemons"
    )
}
