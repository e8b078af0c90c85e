//! Holds and promises recorded from the console: written to `rules/holds.yaml` by the library (atomically, hand edits kept), then the daemon's reload awaited, so that the next page and `/api/plan` show them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::App;
use crate::error::Result;

/// How long a request waits for the daemon to reload what it wrote: a
/// reload of the rules takes milliseconds, unless an evaluation is running.
const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// The rules folder of the folder in use (where `holds.yaml` is).
pub(crate) fn rules_dir(app: &App) -> PathBuf {
    let status = app.shared.status();
    let config = &status.project.config;
    config.path(&config.rules)
}

/// Writes with `write` in the rules folder, then has the daemon reload it
/// and waits for that (a busy daemon reloads it later, as the watcher
/// would: the file is written either way). `what` is logged.
pub(crate) fn write<T>(app: &App, what: &str, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let rules = rules_dir(app);
    let written = write(&rules)?;
    tracing::info!("console: {what}");
    if !app
        .shared
        .reload_after(&[rules.join("holds.yaml")], RELOAD_WAIT)
    {
        tracing::warn!(
            "console: {what}: written; the daemon has not reloaded it within {} s (it will)",
            RELOAD_WAIT.as_secs()
        );
    }
    Ok(written)
}
