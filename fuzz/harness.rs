//! What each fuzz target does with its input, shared by the fuzz targets
//! (`fuzz/fuzz_targets/`, run by `fuzz/run.sh`) and by `tests/fuzz_corpus.rs`,
//! which runs the seed corpus and every crash ever found on a stable
//! toolchain. Each function must return, whatever the bytes: a panic is the
//! bug the fuzzer looks for.
// Each fuzz target calls one of these functions; the corpus test calls them all.
#![allow(dead_code)]

use std::path::Path;

use relance::internals::{parse_amount, parse_date, parse_decimal};
use relance::{Options, Project};

/// A folder in memory-backed temporary storage (`TMPDIR`), gone when dropped.
fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (path, bytes) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
        std::fs::write(path, bytes).expect("a file");
    }
    dir
}

/// A feed file of these bytes, read as `name` (its extension picks CSV, JSON
/// or JSON Lines) in an otherwise valid folder, loaded, checked and planned.
/// The first byte picks a dialect, so the fuzzer explores `;` CSV, decimal
/// commas and day-first dates too.
fn feed(name: &str, bytes: &[u8]) {
    let (dialect, content) = bytes.split_first().map_or((0, bytes), |(d, c)| (*d, c));
    let mut settings = format!("{{path: data/{name}");
    if dialect & 1 == 1 {
        settings.push_str(", delimiter: \";\", decimal: \",\"");
    }
    if dialect & 2 == 2 {
        settings.push_str(", date_format: \"%d/%m/%Y\"");
    }
    let config = format!("feeds: [{settings}}}]\n");
    load_and_check(&[
        ("relance.yaml", config.as_bytes()),
        (&format!("data/{name}"), content),
        (
            "rules/p.yaml",
            b"name: p\nstages:\n  - {id: s, offset: 1, template: t, group: customer}\n",
        ),
        (
            "templates/t.fr.hbs",
            b"---\nsubject: \"{{invoice.number}} {{money invoice.amount_due}}\"\n---\n{{#each invoices}}{{number}}{{/each}}\n",
        ),
    ]);
}

/// A CSV feed of these bytes ([`feed`]).
pub fn feed_csv(bytes: &[u8]) {
    feed("invoices.csv", bytes);
}

/// A JSON feed of these bytes ([`feed`]).
pub fn feed_json(bytes: &[u8]) {
    feed("invoices.json", bytes);
}

/// A policy file of these bytes in an otherwise valid folder, loaded and checked.
pub fn policy(bytes: &[u8]) {
    load_and_check(&[
        ("rules/p.yaml", bytes),
        ("templates/t.fr.hbs", b"---\nsubject: S\n---\nB\n"),
    ]);
}

/// A template (front matter and body) of these bytes, used by a valid
/// policy, loaded and checked (`check` renders every template).
pub fn template(bytes: &[u8]) {
    load_and_check(&[
        (
            "rules/p.yaml",
            b"name: p\nstages:\n  - {id: s, offset: 1, template: t}\n",
        ),
        ("templates/t.fr.hbs", bytes),
    ]);
}

/// Amounts and decimals as feeds, the config and templates read them.
pub fn amount(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for decimal in ['.', ','] {
        let _ = parse_amount(&text, decimal);
    }
    let _ = parse_decimal(&text);
}

/// The date formats a feed's `date_format` commonly holds.
const DATE_FORMATS: [&str; 5] = ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d"];

/// Dates as feeds read them: the input in each common `date_format`, and,
/// when it holds a line break, its first line as the format and the rest as
/// the date. A date read must be the one chrono reads: relance reads dates
/// of a fixed shape by the positions of their digits, faster, and must not
/// read another day than chrono would (with the default `%Y-%m-%d`, only
/// that fixed shape is a date: `2026-1-5` is not).
pub fn date(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut cases: Vec<(&str, &str)> = DATE_FORMATS.iter().map(|f| (*f, &*text)).collect();
    if let Some((format, value)) = text.split_once('\n') {
        cases.push((format, value));
    }
    for (format, value) in cases {
        let read = parse_date(format, value);
        let chrono = chrono::NaiveDate::parse_from_str(value, format).ok();
        if format == "%Y-%m-%d" {
            assert!(
                read.is_none() || read == chrono,
                "{value:?} in {format}: relance {read:?}, chrono {chrono:?}"
            );
        } else if DATE_FORMATS.contains(&format) {
            assert_eq!(read, chrono, "{value:?} in {format}");
        }
    }
}

fn load_and_check(files: &[(&str, &[u8])]) {
    let dir = folder(files);
    let options = Options {
        dir: dir.path().to_path_buf(),
        ..Options::default()
    };
    if let Ok(project) = Project::load(&options) {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).expect("a date");
        let _ = project.check(today);
        let plan = project.plan(today, 2, &relance::JournalView::default());
        let _ = project.render(&plan.reminders, true);
    }
}

/// A fuzz target: what it does with an input.
pub type Target = fn(&[u8]);

/// The targets by name, for the corpus runner.
pub const TARGETS: [(&str, Target); 6] = [
    ("feed_csv", feed_csv),
    ("feed_json", feed_json),
    ("policy", policy),
    ("template", template),
    ("amount", amount),
    ("date", date),
];

/// The files of a corpus folder, sorted (none when it does not exist).
pub fn corpus(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}
