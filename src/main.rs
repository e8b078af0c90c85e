//! The `relance` command line: a thin shell over the library.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::NaiveDate;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand};

use relance::report::{self, Format, PreviewRequest};
use relance::{
    Awaiting, Baseline, Config, Console, ConsoleSettings, Daemon, HistoryFilter, Journal,
    JournalSetting, Options, PostgresJournal, Project, RunOptions,
};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "relance",
    version,
    about = "Payment reminders (dunning) from YAML policies, Rhai scripts and Handlebars templates"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// The relance folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
    /// The config file [default: DIR/relance.yaml; absent = all defaults].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// A feed to read instead of the config's feeds (repeatable).
    #[arg(long = "feed", global = true)]
    feeds: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Load and validate everything; print every problem as file:line:col: message.
    Check {
        #[arg(long, default_value = "table", value_parser = format_parser())]
        format: Format,
    },
    /// Dry run: the reminders that would go out each day from --as-of for --days days.
    Preview {
        /// Evaluate as if this were today (YYYY-MM-DD).
        #[arg(long)]
        as_of: Option<NaiveDate>,
        #[arg(long, default_value_t = relance::HORIZON_DAYS, value_parser = clap::value_parser!(u32).range(1..=3660))]
        days: u32,
        #[arg(long, default_value = "table", value_parser = format_parser())]
        format: Format,
        /// Print each full message.
        #[arg(long)]
        render: bool,
        /// Only this invoice.
        #[arg(long)]
        invoice: Option<String>,
        /// Compare with other rules: those of folder DIR (its relance.yaml,
        /// rules/ and templates/), or of this folder at git revision REV
        /// (git:HEAD, git:main…). Both plan the same days on this folder's
        /// feeds and journal; prints the reminders the current rules add,
        /// remove and change, by stage (table or json; not with --render
        /// or --invoice). Exit 2 when the baseline cannot be loaded.
        #[arg(long, value_name = "DIR|git:REV", conflicts_with_all = ["render", "invoice"])]
        baseline: Option<String>,
        /// With --baseline: every row of each stage (a table shows 50).
        #[arg(long, requires = "baseline")]
        all: bool,
    },
    /// For one invoice: the policy chosen and why, and each stage's state.
    Explain {
        invoice: String,
        #[arg(long)]
        as_of: Option<NaiveDate>,
        #[arg(long, default_value = "table", value_parser = format_parser())]
        format: Format,
    },
    /// The daemon: evaluate on start and on schedule, deliver, reload on edits.
    Run {
        /// Evaluate one date, deliver and exit.
        #[arg(long)]
        once: bool,
        /// Log what would be sent; touch neither the journal nor the outbox.
        #[arg(long)]
        dry_run: bool,
        /// Send even a batch larger than limits.max_per_run.
        #[arg(long)]
        confirm: bool,
        /// Evaluate as if this were today (YYYY-MM-DD); the whole day counts
        /// as elapsed for send times unless --at says when.
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// The time of day (HH:MM, config's time zone) to evaluate at:
        /// messages whose send time is later wait.
        #[arg(long, value_parser = relance::parse_time)]
        at: Option<chrono::NaiveTime>,
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
        /// Start with a new journal although the outbox or tasks folder
        /// holds delivered files (every reminder may be sent again).
        #[arg(long)]
        fresh_journal: bool,
        /// Serve the web console on ADDR (e.g. 127.0.0.1:8080; port 0:
        /// any free port, logged), instead of the config's `http.listen`.
        #[arg(long, value_name = "ADDR", conflicts_with = "once")]
        http: Option<std::net::SocketAddr>,
    },
    /// The web console alone: load the folder and reload it on edits like
    /// the daemon, but never evaluate nor deliver.
    Serve {
        /// Serve on ADDR instead of the config's `http.listen` (default
        /// 127.0.0.1:8080; port 0: any free port, logged).
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// Show the plan as if this were today (YYYY-MM-DD).
        #[arg(long)]
        as_of: Option<NaiveDate>,
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// Re-queue failed reminders: due for a retry now, at the daemon's
    /// next pass or the next `run --once`.
    Retry {
        /// The invoices whose failed reminders are re-queued.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        invoices: Vec<String>,
        /// Every failed reminder.
        #[arg(long)]
        all: bool,
    },
    /// Send reminders awaiting approval (stages with `approve: true`): they
    /// go out at the daemon's next pass (`kill -HUP` makes that now) or the
    /// next `run --once`, unless their invoice was paid meanwhile.
    Approve {
        #[command(flatten)]
        which: AwaitingArgs,
    },
    /// Drop reminders awaiting approval: journaled `skipped`, with the reason.
    Reject {
        #[command(flatten)]
        which: AwaitingArgs,
        /// Why they are dropped (`history` shows it).
        #[arg(long)]
        reason: String,
    },
    /// Run the policy tests (rules/*.test.yaml) on the real engine and templates.
    ///
    /// Each case gives invoices, a journal and a date, and the reminders that
    /// must go out; its invoices replace the feeds, which are not read. Exit 0
    /// when every case passes, 1 when one fails, 2 when a test file, the
    /// config or the rules do not load (located errors on stderr).
    Test {
        /// Test files to run instead of every rules/*.test.yaml.
        files: Vec<PathBuf>,
        /// table: a line per case and the difference of a failing one; json: for machines.
        #[arg(long, default_value = "table", value_parser = table_or_json())]
        format: Format,
    },
    /// Replay the feeds' history with the current rules: the reminders that
    /// would have gone out each day, and how the customers paid after them.
    ///
    /// Every day from --from to --to, the invoices stand as they did that
    /// day (issued on their issue_date, open until their paid_date, the
    /// customers' aggregates of that day) and the rules decide as the daemon
    /// would, with a journal that starts empty on --from. Nothing is sent,
    /// and the journal is not touched.
    Backtest {
        /// The first day replayed (YYYY-MM-DD).
        #[arg(long)]
        from: NaiveDate,
        /// The last day replayed (YYYY-MM-DD), on or after --from.
        #[arg(long)]
        to: NaiveDate,
        #[arg(long, default_value = "table", value_parser = table_or_json())]
        format: Format,
    },
    /// Where the money stands: open amounts by days past due, disputed,
    /// held and DSO per currency; each customer's; the next 14 days'
    /// reminders by stage; the customers who pay late as a habit.
    Report {
        /// Age the invoices as of this date (YYYY-MM-DD).
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// html: one self-contained page with charts, in the config's language.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// Operations on the journal itself.
    Journal {
        #[command(subcommand)]
        action: JournalAction,
    },
    /// The journal, newest first.
    History {
        invoice: Option<String>,
        /// Only what concerns this customer (its customer_id): all of its invoices.
        #[arg(long)]
        customer: Option<String>,
        #[arg(long, default_value = "table", value_parser = format_parser())]
        format: Format,
    },
}

#[derive(Subcommand)]
enum JournalAction {
    /// Copy the folder's SQLite journal into an empty PostgreSQL journal,
    /// checked by row counts and a checksum (stop the daemon first).
    Copy {
        /// Where to: postgres.
        #[arg(long, value_parser = PossibleValuesParser::new(["postgres"]))]
        to: String,
        /// The environment variable holding the PostgreSQL URL.
        #[arg(long, default_value = relance::PostgresJournal::DEFAULT_URL_ENV)]
        url_env: String,
    },
}

/// The reminders awaiting approval that `approve` or `reject` decides.
#[derive(Args)]
struct AwaitingArgs {
    /// The invoices whose reminders awaiting approval are decided.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    invoices: Vec<String>,
    /// Every reminder awaiting approval.
    #[arg(long)]
    all: bool,
    /// Only those of this stage.
    #[arg(long)]
    stage: Option<String>,
    /// Only those of this policy.
    #[arg(long)]
    policy: Option<String>,
}

/// `relance report --format table|json|html`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Html,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Logs to stderr at `default` level unless `RELANCE_LOG` says otherwise
/// (`RELANCE_LOG=debug relance preview` times each step).
fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELANCE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        // Values come from feeds: a CR or LF in an invoice number must not
        // start what looks like a log line of its own.
        LogFormat::Human => {
            use tracing_subscriber::field::MakeExt;
            let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                let value = escape_controls(&format!("{value:?}"));
                match field.name() {
                    "message" => write!(w, "{value}"),
                    name => write!(w, "{name}={value}"),
                }
            })
            .delimited(" ");
            builder.fmt_fields(fields).init()
        }
    }
}

/// Control characters (CR, LF, ESC…) written as escapes (`\r`, `\u{1b}`).
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// `--format table|json|csv`, parsed into the library's [`Format`].
fn format_parser() -> impl TypedValueParser<Value = Format> {
    PossibleValuesParser::new(Format::NAMES).map(|name| name.parse().unwrap_or(Format::Table))
}

/// `--format table|json`, for the commands that have no CSV form.
fn table_or_json() -> impl TypedValueParser<Value = Format> {
    PossibleValuesParser::new(["table", "json"]).map(|name| name.parse().unwrap_or(Format::Table))
}

/// Exits as clap does on a usage error (exit code 2): what was expected,
/// then the subcommand's usage.
fn usage_error(subcommand: &str, message: &str) -> ! {
    let mut cli = Cli::command();
    cli.build();
    let error = match cli.find_subcommand_mut(subcommand) {
        Some(sub) => sub.error(clap::error::ErrorKind::ArgumentConflict, message),
        None => Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message),
    };
    error.exit()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `relance history | head`: the reader has what it wanted.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        // A console beyond this machine without a token: a usage error.
        Err(e)
            if matches!(
                e.downcast_ref::<relance::Error>(),
                Some(relance::Error::Unprotected(_))
            ) =>
        {
            eprintln!("relance: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("relance: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    let is_broken = |io: &io::Error| io.kind() == io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(is_broken)
            || matches!(c.downcast_ref::<relance::Error>(), Some(relance::Error::Output(io)) if is_broken(io))
    })
}

fn options(g: &Global) -> Options {
    Options {
        dir: g.dir.clone(),
        config: g.config.clone(),
        feeds: g.feeds.clone(),
    }
}

/// Loads the project; unless `strict`, problems that stop nothing are printed as warnings.
fn load(g: &Global, strict: bool) -> Result<Project> {
    let project = Project::load(&options(g))?;
    if !strict {
        report::problems_text(&mut io::stderr(), &project.problems)?;
        // Bad rows keep the documented `file:line: field: reason` form (no
        // "warning:" wedged between location and field); the summary line
        // says they are warnings that stopped nothing.
        report::problems_text(&mut io::stderr(), &project.feed_problems)?;
        if project.bad_rows > 0 {
            eprintln!(
                "warning: {} bad feed row(s) skipped; the other rows were processed",
                project.bad_rows
            );
        }
    }
    Ok(project)
}

/// The exit code of `preview` and `explain`, which still show what the rest
/// of the folder gives: 1 when a feed cannot be read at all (an error,
/// docs/contract.md §2, unlike a bad row) or when a policy, script, template
/// or the config failed to load. `run` refuses to start on the latter, so a
/// preview that exits 0 there would promise reminders the daemon never sends.
fn exit_code(project: &Project) -> ExitCode {
    failed_if(!project.unreadable_feeds.is_empty() || project.has_rule_errors())
}

fn failed_if(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The process ends once the command has printed: freeing a million
/// invoices one allocation at a time would only delay the exit (a tenth of a
/// second at that size), and the system takes the memory back at once.
fn exit_without_freeing(project: Project) {
    std::mem::forget(project);
}

/// The evaluation date: `--as-of`, else today in the config's time zone.
fn today(project: &Project, as_of: Option<NaiveDate>) -> NaiveDate {
    as_of.unwrap_or_else(|| project.date_at(chrono::Utc::now()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    // The daemon logs from info up; the other commands print their own
    // results and only log what RELANCE_LOG asks for.
    if !matches!(cli.command, Command::Run { .. } | Command::Serve { .. }) {
        init_logging(LogFormat::Human, "warn");
    }
    // Buffered: a preview of a million rows must not cost a write per line.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let code = execute(cli, &mut out)?;
    out.flush()?;
    Ok(code)
}

fn execute(cli: Cli, out: &mut dyn Write) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Check { format } => {
            let project = load(g, true)?;
            let today = today(&project, None);
            let errors = report::check(out, &mut io::stderr(), &project, today, format)?;
            // A journal that cannot be reached is a configuration error:
            // no command that reads or writes it can work.
            if let Some(why) = Journal::probe(&project.config) {
                eprintln!("relance: {why}");
                return Ok(ExitCode::from(2));
            }
            exit_without_freeing(project);
            Ok(failed_if(errors > 0))
        }
        Command::Preview {
            as_of,
            days,
            format,
            render,
            invoice,
            baseline,
            all,
        } => {
            if let Some(spec) = baseline {
                return preview_impact(g, &spec, as_of, days, format, all, out);
            }
            let project = load(g, false)?;
            let request = PreviewRequest {
                from: today(&project, as_of),
                days,
                format,
                render,
                invoice,
            };
            let journal = project.journal_view()?;
            report::preview(out, &project, &journal, &request, &mut |w| eprintln!("{w}"))?;
            let code = exit_code(&project);
            exit_without_freeing(project);
            Ok(code)
        }
        Command::Explain {
            invoice,
            as_of,
            format,
        } => {
            let project = load(g, false)?;
            let journal = project.journal_view()?;
            let explanation =
                relance::explain(&project, &invoice, today(&project, as_of), &journal)?;
            match format {
                Format::Json => report::json(out, &serde_json::to_value(&explanation)?)?,
                _ => explanation.write_text(out)?,
            }
            Ok(exit_code(&project))
        }
        Command::Run {
            once,
            dry_run,
            confirm,
            as_of,
            at,
            log_format,
            fresh_journal,
            http,
        } => {
            init_logging(log_format, "info");
            let run = RunOptions {
                as_of,
                dry_run,
                confirm,
                at,
                fresh_journal,
                serve_only: false,
            };
            let mut daemon = Daemon::start(options(g), run)?;
            if !once {
                if let Some(settings) = ConsoleSettings::of(&daemon.project().config, http, false)?
                {
                    Console::start(daemon.shared(), settings)?;
                }
                daemon.serve()?;
                return Ok(ExitCode::SUCCESS);
            }
            let report = daemon.evaluate(chrono::Utc::now())?;
            report.log();
            Ok(failed_if(report.held || report.failed > 0))
        }
        Command::Serve {
            http,
            as_of,
            log_format,
        } => {
            init_logging(log_format, "info");
            let run = RunOptions {
                as_of,
                serve_only: true,
                ..RunOptions::default()
            };
            let daemon = Daemon::start(options(g), run)?;
            if let Some(settings) = ConsoleSettings::of(&daemon.project().config, http, true)? {
                Console::start(daemon.shared(), settings)?;
            }
            daemon.serve()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry { invoices, all } => {
            // No journal, no failed reminder: `retry` does not create one.
            let journal = existing_journal(g)?;
            let now = now_rfc3339();
            let requeue = |invoice: Option<&str>| match &journal {
                Some(j) => j.requeue(invoice, &now),
                None => Ok(0),
            };
            if all {
                let n = requeue(None)?;
                writeln!(out, "{n} failed reminder(s) re-queued")?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut missing = false;
            for invoice in &invoices {
                match requeue(Some(invoice))? {
                    0 => {
                        eprintln!("relance: invoice {invoice} has no failed reminder");
                        missing = true;
                    }
                    n => writeln!(out, "{invoice}: {n} failed reminder(s) re-queued")?,
                }
            }
            Ok(failed_if(missing))
        }
        Command::Approve { which } => decide_approvals(g, &which, None, out),
        Command::Reject { which, reason } => decide_approvals(g, &which, Some(&reason), out),
        Command::Test { files, format } => {
            // Its cases bring their own invoices: the feeds are not read.
            let project = match Project::load_rules(&options(g)) {
                Ok(project) => project,
                Err(e) => {
                    eprintln!("relance: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            report::problems_text(&mut io::stderr(), &project.problems)?;
            if project.has_rule_errors() {
                // Every case would fail for the one error above, and bury it.
                eprintln!("relance: policy tests not run: the rules have errors (located above)");
                return Ok(ExitCode::from(2));
            }
            let files = relance::test_files(&project.config, &files);
            let results = relance::run_tests(&project, &files);
            for file in &results {
                report::problems_text(&mut io::stderr(), &file.problems)?;
            }
            report::policy_tests(out, &results, format)?;
            Ok(if results.iter().any(|f| !f.loaded()) {
                ExitCode::from(2)
            } else {
                failed_if(results.iter().flat_map(|f| &f.cases).any(|c| !c.passed))
            })
        }
        Command::Backtest { from, to, format } => {
            if from > to {
                usage_error(
                    "backtest",
                    &format!("--from {from} is after --to {to}: expected --from on or before --to"),
                );
            }
            let project = load(g, false)?;
            report::backtest::backtest(out, &project, from, to, format, &mut |w| eprintln!("{w}"))?;
            Ok(exit_code(&project))
        }
        Command::Report { as_of, format } => {
            let project = load(g, false)?;
            let journal = project.journal_view()?;
            let receivables = report::receivables(&project, &journal, today(&project, as_of));
            match format {
                ReportFormat::Table => report::receivables::write_table(out, &receivables)?,
                ReportFormat::Json => report::json(out, &receivables)?,
                ReportFormat::Html => {
                    let page = report::receivables_html(&receivables, &project.config.language);
                    out.write_all(page.as_bytes())?
                }
            }
            Ok(exit_code(&project))
        }
        Command::Journal {
            action: JournalAction::Copy { to: _, url_env },
        } => copy_journal(g, &url_env, out),
        Command::History {
            invoice,
            customer,
            format,
        } => {
            let config = Config::load(&g.dir, g.config.as_deref())?;
            let filter = HistoryFilter {
                invoice: invoice.as_deref(),
                customer: customer.as_deref(),
                customers: format != Format::Table,
            };
            let entries = relance::history(&config, &options(g), filter)?;
            report::history(out, &entries, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `relance journal copy --to postgres`: the folder's SQLite journal into
/// the empty PostgreSQL one `url_env` names. Exit 2, with why, when the
/// copy cannot be made (no SQLite journal, the variable unset, a journal
/// that already holds reminders, a copy that differs).
fn copy_journal(g: &Global, url_env: &str, out: &mut dyn Write) -> Result<ExitCode> {
    let config = Config::load(&g.dir, g.config.as_deref())?;
    let refused = |why: &dyn std::fmt::Display| {
        eprintln!("relance: journal copy: {why}");
        Ok(ExitCode::from(2))
    };
    let JournalSetting::File(file) = &config.journal else {
        return refused(
            &"the folder's journal is already in PostgreSQL (`journal:` in relance.yaml)",
        );
    };
    let path = config.path(file);
    let Some(_) = Journal::open_read_only(&path)? else {
        return refused(&format!("{}: there is no journal to copy", path.display()));
    };
    let copied = Journal::open(&path).and_then(|source| {
        let target = Journal::open_postgres(&PostgresJournal::at(url_env))?;
        source.copy_to(&target)
    });
    match copied {
        Ok(copied) => {
            report::journal_copy::write(out, &path.display().to_string(), url_env, &copied)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (relance::Error::Refused(_) | relance::Error::Database { .. })) => refused(&e),
        Err(e) => Err(e.into()),
    }
}

/// The folder's journal, migrated if need be; `None` when there is none
/// yet (a command that changes rows creates none).
fn existing_journal(g: &Global) -> Result<Option<Journal>> {
    let config = Config::load(&g.dir, g.config.as_deref())?;
    Ok(match Journal::open_config_read_only(&config)? {
        Some(_) => Some(Journal::open_config(&config)?),
        None => None,
    })
}

/// Now, as the journal writes times.
fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `approve`, or `reject` with its reason: the reminders awaiting approval
/// of each invoice named (of every invoice with `--all`). Exit 1 when a
/// named invoice has none (the others are decided).
fn decide_approvals(
    g: &Global,
    which: &AwaitingArgs,
    reject: Option<&str>,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let journal = existing_journal(g)?;
    let now = now_rfc3339();
    let decide = |invoice: Option<&str>| {
        let selected = Awaiting {
            invoice,
            stage: which.stage.as_deref(),
            policy: which.policy.as_deref(),
        };
        match (&journal, reject) {
            (None, _) => Ok(Vec::new()),
            (Some(j), Some(reason)) => j.reject(&selected, reason, &now),
            (Some(j), None) => j.approve(&selected, &now),
        }
    };
    let verb = if reject.is_some() {
        "rejected"
    } else {
        "approved"
    };
    if which.all {
        report::approvals::write(out, None, &decide(None)?, verb)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut missing = false;
    for invoice in &which.invoices {
        let decided = decide(Some(invoice))?;
        if decided.is_empty() {
            let of_stage = which
                .stage
                .as_ref()
                .map_or(String::new(), |s| format!(" of stage {s}"));
            let of_policy = which
                .policy
                .as_ref()
                .map_or(String::new(), |p| format!(" of policy {p}"));
            eprintln!(
                "relance: invoice {invoice} has no reminder{of_stage}{of_policy} awaiting approval"
            );
            missing = true;
        }
        report::approvals::write(out, Some(invoice), &decided, verb)?;
    }
    Ok(failed_if(missing))
}

/// `preview --baseline`: the folder's rules against the baseline's on the
/// same feeds and journal. Exit 2 when the baseline cannot be used (a
/// difference with rules that do not load would mean nothing), 1 when the
/// folder's own rules do not load or a feed cannot be read.
fn preview_impact(
    g: &Global,
    spec: &str,
    as_of: Option<NaiveDate>,
    days: u32,
    format: Format,
    all: bool,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    if format == Format::Csv {
        eprintln!("relance: preview --baseline prints a table or JSON (--format table|json)");
        return Ok(ExitCode::from(2));
    }
    let project = load(g, false)?;
    if project.has_rule_errors() {
        eprintln!(
            "relance: the folder's rules have errors (above): fix them before comparing (relance check)"
        );
        return Ok(ExitCode::from(1));
    }
    let baseline = match Baseline::load(spec, &g.dir, &project) {
        Ok(baseline) => baseline,
        Err(e) => {
            eprintln!("relance: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if baseline.project.has_rule_errors() {
        report::problems_text(&mut io::stderr(), &baseline.project.problems)?;
        eprintln!(
            "relance: --baseline {spec}: its rules have errors (above): a difference with them would mean nothing"
        );
        return Ok(ExitCode::from(2));
    }
    let journal = project.journal_view()?;
    let from = today(&project, as_of);
    let impact = relance::impact(&baseline.project, &project, from, days, &journal);
    for warning in &impact.warnings {
        eprintln!("{warning}");
    }
    report::impact::write(out, &impact, format, all)?;
    Ok(exit_code(&project))
}
