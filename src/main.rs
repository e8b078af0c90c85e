//! The `relance` command line: a thin shell over the library.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::NaiveDate;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand};

use relance::report::Format;
use relance::report::commands::{self, AsOf, Done, Exit, Invoices, Preview, ReportFormat};
use relance::{Approval, AwaitingFilter, Options, RunOptions};

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
    Preview(PreviewArgs),
    /// For one invoice: the policy chosen and why, and each stage's state.
    Explain {
        invoice: String,
        #[arg(long)]
        as_of: Option<NaiveDate>,
        #[arg(long, default_value = "table", value_parser = format_parser())]
        format: Format,
    },
    /// The daemon: evaluate on start and on schedule, deliver, reload on edits.
    Run(RunArgs),
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
        format: ReportFormatArg,
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

/// `relance preview`'s arguments.
#[derive(Args)]
struct PreviewArgs {
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
}

impl PreviewArgs {
    fn preview(self, now: chrono::DateTime<chrono::Utc>) -> Preview {
        Preview {
            as_of: AsOf {
                date: self.as_of,
                now,
            },
            days: self.days,
            format: self.format,
            render: self.render,
            invoice: self.invoice,
            baseline: self.baseline,
            all: self.all,
        }
    }
}

/// `relance run`'s arguments.
#[derive(Args)]
struct RunArgs {
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
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            as_of: self.as_of,
            dry_run: self.dry_run,
            confirm: self.confirm,
            at: self.at,
            fresh_journal: self.fresh_journal,
            serve_only: false,
        }
    }
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

impl AwaitingArgs {
    fn invoices(&self) -> Invoices<'_> {
        invoices(self.all, &self.invoices)
    }

    fn filter(&self) -> AwaitingFilter<'_> {
        AwaitingFilter {
            stage: self.stage.as_deref(),
            policy: self.policy.as_deref(),
        }
    }
}

/// The invoices named, or with `--all` every one.
fn invoices(all: bool, named: &[String]) -> Invoices<'_> {
    if all {
        Invoices::All
    } else {
        Invoices::Named(named)
    }
}

/// `relance report --format table|json|html`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormatArg {
    Table,
    Json,
    Html,
}

impl From<ReportFormatArg> for ReportFormat {
    fn from(format: ReportFormatArg) -> ReportFormat {
        match format {
            ReportFormatArg::Table => ReportFormat::Table,
            ReportFormatArg::Json => ReportFormat::Json,
            ReportFormatArg::Html => ReportFormat::Html,
        }
    }
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
                let value = format!("{value:?}");
                let value = relance::escape_controls(&value);
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
    if let Command::Backtest { from, to, .. } = &cli.command
        && from > to
    {
        usage_error(
            "backtest",
            &format!("--from {from} is after --to {to}: expected --from on or before --to"),
        );
    }
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

/// The exit code of a command done. The process ends once the command has
/// printed: the folder it loaded is left to the system, which takes the
/// memory back at once, rather than freed one allocation at a time.
fn exit(done: Done) -> ExitCode {
    std::mem::forget(done.project);
    match done.exit {
        Exit::Ok => ExitCode::SUCCESS,
        Exit::Problems => ExitCode::from(1),
        Exit::Usage => ExitCode::from(2),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // The daemon logs from info up; the other commands print their own
    // results and only log what RELANCE_LOG asks for.
    match cli.command {
        Command::Run(RunArgs { log_format, .. }) | Command::Serve { log_format, .. } => {
            init_logging(log_format, "info")
        }
        _ => init_logging(LogFormat::Human, "warn"),
    }
    // Buffered: a preview of a million rows must not cost a write per line.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let code = exit(execute(cli, &mut out)?);
    out.flush()?;
    Ok(code)
}

fn execute(cli: Cli, out: &mut dyn Write) -> relance::Result<Done> {
    let options = options(&cli.global);
    let err = &mut io::stderr();
    let now = chrono::Utc::now();
    let as_of = |date| AsOf { date, now };
    match cli.command {
        Command::Check { format } => commands::check(out, err, &options, format, now),
        Command::Preview(args) => commands::preview(out, err, &options, args.preview(now)),
        Command::Explain {
            invoice,
            as_of: date,
            format,
        } => commands::explain(out, err, &options, &invoice, as_of(date), format),
        Command::Run(args) if args.once => commands::run_once(options, args.options()),
        Command::Run(args) => {
            relance::serve(options, args.options(), args.http).map(|()| Exit::Ok.into())
        }
        Command::Serve { http, as_of, .. } => {
            let run = RunOptions {
                as_of,
                serve_only: true,
                ..RunOptions::default()
            };
            relance::serve(options, run, http).map(|()| Exit::Ok.into())
        }
        Command::Retry {
            invoices: named,
            all,
        } => commands::retry(out, err, &options, invoices(all, &named), now),
        Command::Approve { which } => {
            let (invoices, filter) = (which.invoices(), which.filter());
            commands::decide_approvals(out, err, &options, invoices, filter, Approval::Approve, now)
        }
        Command::Reject { which, reason } => {
            let (invoices, filter) = (which.invoices(), which.filter());
            let reject = Approval::Reject { reason: &reason };
            commands::decide_approvals(out, err, &options, invoices, filter, reject, now)
        }
        Command::Test { files, format } => commands::test(out, err, &options, &files, format),
        Command::Backtest { from, to, format } => {
            commands::backtest(out, err, &options, from, to, format)
        }
        Command::Report {
            as_of: date,
            format,
        } => commands::receivables(out, err, &options, as_of(date), format.into()),
        Command::Journal {
            action: JournalAction::Copy { to: _, url_env },
        } => commands::copy_journal(out, err, &options, &url_env),
        Command::History {
            invoice,
            customer,
            format,
        } => {
            let (invoice, customer) = (invoice.as_deref(), customer.as_deref());
            commands::history(out, &options, invoice, customer, format)
        }
    }
}
