//! The commands of `relance` as one call each: what they print (stdout and stderr as writers) and how they end, so the binary is clap and exit codes only.

use std::io::{self, Write};
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};

use super::{Format, PreviewRequest, json, problems_text};
use crate::config::{Config, JournalSetting, PostgresJournal};
use crate::daemon::{Daemon, RunOptions};
use crate::error::{Error, Result};
use crate::impact::{Baseline, impact};
use crate::journal::Journal;
use crate::policy_tests::{run_tests, test_files};
use crate::project::decisions::{self, Approval, AwaitingFilter, Invoice};
use crate::project::history::{self as journal, HistoryFilter};
use crate::project::{Options, Project};

/// How a command ended, as its exit code says it (docs/reference.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: done, with problems found (errors in `check`, a failing policy
    /// test, a feed that cannot be read, a named invoice with nothing to do).
    Problems,
    /// 2: not done as asked (a usage error; a baseline, test file or rules
    /// that do not load).
    Usage,
}

impl Exit {
    fn problems_if(found: bool) -> Exit {
        if found { Exit::Problems } else { Exit::Ok }
    }

    /// The exit of a command that shows what the rest of the folder gives
    /// (`preview`, `explain`, `backtest`, `report`): problems when a feed
    /// cannot be read at all (an error, docs/contract.md §2, unlike a bad row)
    /// or when a policy, script, template or the config failed to load. `run`
    /// refuses to start on the latter, so a preview that exits 0 there would
    /// promise reminders the daemon never sends.
    fn of(project: &Project) -> Exit {
        Exit::problems_if(!project.unreadable_feeds.is_empty() || project.has_rule_errors())
    }
}

/// A command done: how it ended, and the folder it loaded. A process about
/// to exit may leave the folder to the system rather than free it: freeing a
/// million invoices one allocation at a time takes a tenth of a second.
pub struct Done {
    pub exit: Exit,
    pub project: Option<Project>,
}

impl From<Exit> for Done {
    fn from(exit: Exit) -> Done {
        Done {
            exit,
            project: None,
        }
    }
}

impl Done {
    fn with(exit: Exit, project: Project) -> Done {
        Done {
            exit,
            project: Some(project),
        }
    }
}

/// The evaluation date a command was given: `--as-of`, else the day it is
/// `now` in the config's time zone.
#[derive(Debug, Clone, Copy)]
pub struct AsOf {
    pub date: Option<NaiveDate>,
    pub now: DateTime<Utc>,
}

impl AsOf {
    pub fn of(self, project: &Project) -> NaiveDate {
        self.date.unwrap_or_else(|| project.date_at(self.now))
    }
}

fn output(cause: io::Error) -> Error {
    Error::Output(cause)
}

/// A warning as the commands write them: a line of its own on `err`. A
/// warning that cannot be written must not stop the command.
fn warner(err: &mut dyn Write) -> impl FnMut(&str) + '_ {
    move |warning| {
        let _ = writeln!(err, "{warning}");
    }
}

/// Loads the folder; with `warnings`, the problems that stop nothing are
/// written to `err` (`check` writes every problem itself).
pub fn load(options: &Options, warnings: bool, err: &mut dyn Write) -> Result<Project> {
    let project = Project::load(options)?;
    if warnings {
        problems_text(err, &project.problems).map_err(output)?;
        // Bad rows keep the documented `file:line: field: reason` form (no
        // "warning:" wedged between location and field); the summary line
        // says they are warnings that stopped nothing.
        problems_text(err, &project.feed_problems).map_err(output)?;
        if project.bad_rows > 0 {
            writeln!(
                err,
                "warning: {} bad feed row(s) skipped; the other rows were processed",
                project.bad_rows
            )
            .map_err(output)?;
        }
    }
    Ok(project)
}

/// `relance check`: every problem on `out`, the summary on `err`; problems
/// when one is an error.
pub fn check(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    format: Format,
    now: DateTime<Utc>,
) -> Result<Done> {
    let project = load(options, false, err)?;
    let today = project.date_at(now);
    let errors = super::check(out, err, &project, today, format).map_err(output)?;
    // A journal that cannot be reached is a configuration error: no command
    // that reads or writes it can work.
    if let Some(why) = Journal::probe(&project.config) {
        writeln!(err, "relance: {why}").map_err(output)?;
        return Ok(Done::with(Exit::Usage, project));
    }
    Ok(Done::with(Exit::problems_if(errors > 0), project))
}

/// `relance journal copy --to postgres`: the folder's SQLite journal into
/// the empty PostgreSQL one `url_env` names. Not done (with why on `err`)
/// when the copy cannot be made: no SQLite journal, the variable unset, a
/// journal that already holds reminders, a copy that differs.
pub fn copy_journal(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    url_env: &str,
) -> Result<Done> {
    let config = Config::load(&options.dir, options.config.as_deref())?;
    let mut refused = |why: &dyn std::fmt::Display| {
        writeln!(err, "relance: journal copy: {why}").map_err(output)?;
        Ok(Done::from(Exit::Usage))
    };
    let JournalSetting::File(file) = &config.journal else {
        return refused(
            &"the folder's journal is already in PostgreSQL (`journal:` in relance.yaml)",
        );
    };
    let path = config.path(file);
    if Journal::open_read_only(&path)?.is_none() {
        return refused(&format!("{}: there is no journal to copy", path.display()));
    }
    let copied = Journal::open(&path).and_then(|source| {
        let target = Journal::open_postgres(&PostgresJournal::at(url_env))?;
        source.copy_to(&target)
    });
    match copied {
        Ok(copied) => {
            super::journal_copy::write(out, &path.display().to_string(), url_env, &copied)
                .map_err(output)?;
            Ok(Exit::Ok.into())
        }
        Err(e @ (Error::Refused(_) | Error::Database { .. })) => refused(&e),
        Err(e) => Err(e),
    }
}

/// What `relance preview` was asked.
#[derive(Debug, Clone)]
pub struct Preview {
    pub as_of: AsOf,
    pub days: u32,
    pub format: Format,
    /// Each full message.
    pub render: bool,
    /// Only this invoice.
    pub invoice: Option<String>,
    /// `--baseline DIR|git:REV`: the difference the folder's rules make to these.
    pub baseline: Option<String>,
    /// With a baseline: every row of each stage (a table shows 50).
    pub all: bool,
}

/// `relance preview`: the reminders of the coming days, or with a baseline
/// the difference the folder's rules make.
pub fn preview(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    preview: Preview,
) -> Result<Done> {
    if let Some(spec) = &preview.baseline {
        return preview_impact(out, err, options, spec, &preview);
    }
    let project = load(options, true, err)?;
    let request = PreviewRequest {
        from: preview.as_of.of(&project),
        days: preview.days,
        format: preview.format,
        render: preview.render,
        invoice: preview.invoice,
    };
    let journal = project.journal_view()?;
    super::preview(out, &project, &journal, &request, &mut warner(err))?;
    Ok(Done::with(Exit::of(&project), project))
}

/// `preview --baseline`: the folder's rules against the baseline's on the
/// same feeds and journal. A usage error when the baseline cannot be used
/// (a difference with rules that do not load would mean nothing), problems
/// when the folder's own rules do not load or a feed cannot be read.
fn preview_impact(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    spec: &str,
    preview: &Preview,
) -> Result<Done> {
    let refuse = |err: &mut dyn Write, exit: Exit, message: &dyn std::fmt::Display| {
        writeln!(err, "relance: {message}").map_err(output)?;
        Ok(Done::from(exit))
    };
    if preview.format == Format::Csv {
        return refuse(
            err,
            Exit::Usage,
            &"preview --baseline prints a table or JSON (--format table|json)",
        );
    }
    let project = load(options, true, err)?;
    if project.has_rule_errors() {
        return refuse(
            err,
            Exit::Problems,
            &"the folder's rules have errors (above): fix them before comparing (relance check)",
        );
    }
    let baseline = match Baseline::load(spec, &options.dir, &project) {
        Ok(baseline) => baseline,
        Err(e) => return refuse(err, Exit::Usage, &e),
    };
    if baseline.project.has_rule_errors() {
        problems_text(err, &baseline.project.problems).map_err(output)?;
        return refuse(
            err,
            Exit::Usage,
            &format!(
                "--baseline {spec}: its rules have errors (above): a difference with them would mean nothing"
            ),
        );
    }
    let journal = project.journal_view()?;
    let from = preview.as_of.of(&project);
    let impact = impact(&baseline.project, &project, from, preview.days, &journal);
    let mut warn = warner(err);
    for warning in &impact.warnings {
        warn(warning);
    }
    super::impact::write(out, &impact, preview.format, preview.all).map_err(output)?;
    Ok(Exit::of(&project).into())
}

/// `relance run --once`: one evaluation pass, delivered and logged, at the
/// time it is once the folder is loaded (as the daemon's loop reads the
/// clock). Problems when the batch was held or a delivery failed.
pub fn run_once(options: Options, run: RunOptions) -> Result<Done> {
    let mut daemon = Daemon::start(options, run)?;
    let report = daemon.evaluate(Utc::now())?;
    report.log();
    Ok(Exit::problems_if(report.held || report.failed > 0).into())
}

/// `relance explain`: one invoice's decision, as text or JSON.
pub fn explain(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    invoice: &str,
    as_of: AsOf,
    format: Format,
) -> Result<Done> {
    let project = load(options, true, err)?;
    let journal = project.journal_view()?;
    let explanation = super::explain::explain(&project, invoice, as_of.of(&project), &journal)?;
    match format {
        // Through a JSON value, whose keys are sorted.
        Format::Json => serde_json::to_value(&explanation)
            .map_err(io::Error::from)
            .and_then(|value| json(out, &value)),
        _ => explanation.write_text(out),
    }
    .map_err(output)?;
    let exit = Exit::of(&project);
    Ok(Done::with(exit, project))
}

/// `relance test`: the policy tests of `files` (every `rules/*.test.yaml`
/// when empty) on the folder's rules, its feeds unread. Problems when a case
/// fails; a usage error when a test file, the config or the rules do not
/// load (every case would fail for the one error, and bury it).
pub fn test(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    files: &[PathBuf],
    format: Format,
) -> Result<Done> {
    let project = match Project::load_rules(options) {
        Ok(project) => project,
        Err(e) => {
            writeln!(err, "relance: {e}").map_err(output)?;
            return Ok(Exit::Usage.into());
        }
    };
    problems_text(err, &project.problems).map_err(output)?;
    if project.has_rule_errors() {
        writeln!(
            err,
            "relance: policy tests not run: the rules have errors (located above)"
        )
        .map_err(output)?;
        return Ok(Exit::Usage.into());
    }
    let files = test_files(&project.config, files);
    let results = run_tests(&project, &files);
    for file in &results {
        problems_text(err, &file.problems).map_err(output)?;
    }
    super::policy_tests(out, &results, format).map_err(output)?;
    Ok(if results.iter().any(|f| !f.loaded()) {
        Exit::Usage
    } else {
        Exit::problems_if(results.iter().flat_map(|f| &f.cases).any(|c| !c.passed))
    }
    .into())
}

/// `relance backtest`: the days from `from` to `to` (`from` on or before
/// `to`, which the command line checks) replayed.
pub fn backtest(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    from: NaiveDate,
    to: NaiveDate,
    format: Format,
) -> Result<Done> {
    let project = load(options, true, err)?;
    super::backtest::backtest(out, &project, from, to, format, &mut warner(err)).map_err(output)?;
    Ok(Done::with(Exit::of(&project), project))
}

/// How `relance report` writes where the money stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Json,
    /// One self-contained page with charts, in the config's language.
    Html,
}

/// `relance report`: where the money stands on the date.
pub fn receivables(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    as_of: AsOf,
    format: ReportFormat,
) -> Result<Done> {
    let project = load(options, true, err)?;
    let journal = project.journal_view()?;
    let receivables = super::receivables(&project, &journal, as_of.of(&project));
    match format {
        ReportFormat::Table => super::receivables::write_table(out, &receivables),
        ReportFormat::Json => json(out, &receivables),
        ReportFormat::Html => {
            let page = super::receivables_html(&receivables, &project.config.language);
            out.write_all(page.as_bytes())
        }
    }
    .map_err(output)?;
    Ok(Done::with(Exit::of(&project), project))
}

/// `relance history`: the journal, newest first, of one invoice and/or one
/// customer when given.
pub fn history(
    out: &mut dyn Write,
    options: &Options,
    invoice: Option<&str>,
    customer: Option<&str>,
    format: Format,
) -> Result<Done> {
    let config = Config::load(&options.dir, options.config.as_deref())?;
    let filter = HistoryFilter {
        invoice,
        customer,
        customers: format != Format::Table,
    };
    let entries = journal::history(&config, options, filter)?;
    super::history(out, &entries, format).map_err(output)?;
    Ok(Exit::Ok.into())
}

/// The invoices a journal command names, or every invoice (`--all`).
#[derive(Debug, Clone, Copy)]
pub enum Invoices<'a> {
    Named(&'a [String]),
    All,
}

impl<'a> Invoices<'a> {
    fn each(self) -> Vec<Invoice<'a>> {
        match self {
            Invoices::Named(numbers) => numbers.iter().map(|n| Some(n.as_str())).collect(),
            Invoices::All => vec![None],
        }
    }
}

/// Now, as the journal writes times.
fn journal_time(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `relance retry`: the failed reminders of the invoices re-queued, a line
/// each. Problems when a named invoice has none (the others are re-queued).
pub fn retry(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    invoices: Invoices,
    now: DateTime<Utc>,
) -> Result<Done> {
    let config = Config::load(&options.dir, options.config.as_deref())?;
    let requeued = decisions::retry(&config, &invoices.each(), &journal_time(now))?;
    let mut missing = false;
    for (invoice, n) in requeued {
        match (invoice, n) {
            (None, n) => writeln!(out, "{n} failed reminder(s) re-queued"),
            (Some(invoice), 0) => {
                missing = true;
                writeln!(err, "relance: invoice {invoice} has no failed reminder")
            }
            (Some(invoice), n) => writeln!(out, "{invoice}: {n} failed reminder(s) re-queued"),
        }
        .map_err(output)?;
    }
    Ok(Exit::problems_if(missing).into())
}

/// `relance approve`, or `reject` with its reason: the reminders awaiting
/// approval of the invoices decided, a line per invoice. Problems when a
/// named invoice has none (the others are decided).
pub fn decide_approvals(
    out: &mut dyn Write,
    err: &mut dyn Write,
    options: &Options,
    invoices: Invoices,
    filter: AwaitingFilter,
    approval: Approval,
    now: DateTime<Utc>,
) -> Result<Done> {
    let config = Config::load(&options.dir, options.config.as_deref())?;
    let decided = decisions::decide_approvals(
        &config,
        &invoices.each(),
        filter,
        approval,
        &journal_time(now),
    )?;
    let mut missing = false;
    for (invoice, identities) in &decided {
        if let (Some(invoice), true) = (invoice, identities.is_empty()) {
            let of_stage = filter
                .stage
                .map_or(String::new(), |s| format!(" of stage {s}"));
            let of_policy = filter
                .policy
                .map_or(String::new(), |p| format!(" of policy {p}"));
            writeln!(
                err,
                "relance: invoice {invoice} has no reminder{of_stage}{of_policy} awaiting approval"
            )
            .map_err(output)?;
            missing = true;
        }
        super::approvals::write(out, *invoice, identities, approval.verb()).map_err(output)?;
    }
    Ok(Exit::problems_if(missing).into())
}
