//! The `relance` command line: a thin shell over the library.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use relance::diagnostics::Problems;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use relance::journal::Journal;
use relance::project::{Options, Project};
use relance::report::{self, Format};

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
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Dry run: the reminders that would go out each day from --as-of for --days days.
    Preview {
        /// Evaluate as if this were today (YYYY-MM-DD).
        #[arg(long)]
        as_of: Option<NaiveDate>,
        #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3660))]
        days: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Print each full message.
        #[arg(long)]
        render: bool,
        /// Only this invoice.
        #[arg(long)]
        invoice: Option<String>,
    },
    /// For one invoice: the policy chosen and why, and each stage's state.
    Explain {
        invoice: String,
        #[arg(long)]
        as_of: Option<NaiveDate>,
        #[arg(long, value_enum, default_value = "table")]
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
        #[arg(long, value_parser = relance::calendar::parse_time)]
        at: Option<chrono::NaiveTime>,
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// The journal, newest first.
    History {
        invoice: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
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
        LogFormat::Human => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `relance history | head`: the reader has what it wanted.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("relance: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn options(g: &Global) -> Options {
    Options {
        dir: g.dir.clone(),
        config: g.config.clone(),
        feeds: g.feeds.clone(),
    }
}

/// Loads the project; problems that stop nothing are printed as warnings.
fn load(g: &Global, strict: bool) -> Result<Project> {
    let project = Project::load(&options(g)).map_err(|p| anyhow::anyhow!("{p}"))?;
    if !strict {
        print_problems(&mut io::stderr(), &project.problems)?;
        // Bad rows keep the documented `file:line: field: reason` form (no
        // "warning:" wedged between location and field); the summary line
        // says they are warnings that stopped nothing.
        print_problems(&mut io::stderr(), &project.feed_problems)?;
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
/// of the folder gives: 1 when a feed cannot be read at all (an error, SPEC
/// §2, unlike a bad row) or when a policy, script, template or the config
/// failed to load. `run` refuses to start on the latter, so a preview that
/// exits 0 there would promise reminders the daemon never sends.
fn exit_code(project: &Project) -> ExitCode {
    if project.unreadable_feeds.is_empty() && !project.has_rule_errors() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_problems(out: &mut dyn Write, problems: &Problems) -> io::Result<()> {
    for p in problems.iter() {
        writeln!(out, "{p}")?;
    }
    Ok(())
}

fn today(project: &Project, as_of: Option<NaiveDate>) -> NaiveDate {
    as_of.unwrap_or_else(|| {
        chrono::Utc::now()
            .with_timezone(&project.config.timezone)
            .date_naive()
    })
}

fn journal_view(project: &Project) -> Result<relance::journal::JournalView> {
    let path = project.config.path(&project.config.journal);
    Ok(match Journal::open_read_only(&path)? {
        Some(j) => j
            .view()
            .with_context(|| format!("{}: cannot read the journal", path.display()))?,
        None => Default::default(),
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    // The daemon logs from info up; the other commands print their own
    // results and only log what RELANCE_LOG asks for.
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging(LogFormat::Human, "warn");
    }
    // Buffered: a preview of a million rows must not cost a write per line.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let code = execute(cli, &mut out)?;
    out.flush()?;
    Ok(code)
}

fn execute(cli: Cli, mut out: &mut dyn Write) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Check { format } => {
            let project = load(g, true)?;
            let problems = project.check(today(&project, None));
            let errors = problems.iter().filter(|p| p.is_error()).count();
            match format {
                Format::Json => report::json(&mut out, &problems.0)?,
                _ => print_problems(&mut out, &problems)?,
            }
            eprintln!(
                "{}: {errors} error(s), {} warning(s) in {} invoice(s) ({} bad row(s)), {} policies, {} templates",
                if errors == 0 { "ok" } else { "problems found" },
                problems.len() - errors,
                project.ledger.invoices.len() + project.bad_rows,
                project.bad_rows,
                project.rulebook.policies.len(),
                project.rulebook.templates.all().len(),
            );
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Preview {
            as_of,
            days,
            format,
            render,
            invoice,
        } => {
            let project = load(g, false)?;
            let from = today(&project, as_of);
            let only = match &invoice {
                Some(number) => Some(
                    project
                        .ledger
                        .find(number)
                        .with_context(|| format!("invoice {number} is not in the feeds"))?,
                ),
                None => None,
            };
            let plan = project
                .evaluator()
                .plan(from, days, &journal_view(&project)?, only);
            // With --invoice the plan holds its customer's other invoices
            // too (a message may group them): only its own rows are shown.
            let shown = |i: &usize| only.is_none_or(|o| o == *i);
            for (invoice, error) in plan.errors.iter().filter(|(i, _)| shown(i)) {
                eprintln!(
                    "{error} (invoice {})",
                    project.ledger.invoices[*invoice].number
                );
            }
            let started = std::time::Instant::now();
            report::write_preview(
                &mut out,
                &project,
                &plan.reminders,
                only,
                format,
                render,
                &mut |warning| eprintln!("{warning}"),
            )?;
            tracing::debug!(elapsed = ?started.elapsed(), "rendered and written");
            if format == Format::Table {
                let until = relance::calendar::add_days(from, i64::from(days) - 1);
                writeln!(
                    out,
                    "\n{} reminder(s) from {from} to {until}.",
                    plan.reminders.iter().filter(|r| shown(&r.invoice)).count()
                )?;
            }
            if !plan.unmatched.is_empty() {
                let numbers: Vec<&str> = plan
                    .unmatched
                    .iter()
                    .take(10)
                    .map(|i| &*project.ledger.invoices[*i].number)
                    .collect();
                eprintln!(
                    "note: {} open invoice(s) matched no policy: {}{}",
                    plan.unmatched.len(),
                    numbers.join(", "),
                    if plan.unmatched.len() > 10 {
                        ", …"
                    } else {
                        ""
                    }
                );
            }
            Ok(exit_code(&project))
        }
        Command::Explain {
            invoice,
            as_of,
            format,
        } => {
            let project = load(g, false)?;
            let date = today(&project, as_of);
            let Some(index) = project.ledger.find(&invoice) else {
                bail!("invoice {invoice} is not in the feeds");
            };
            let journal = journal_view(&project)?;
            explain(&mut out, &project, index, date, &journal, format)?;
            Ok(exit_code(&project))
        }
        Command::Run {
            once,
            dry_run,
            confirm,
            as_of,
            at,
            log_format,
        } => {
            init_logging(log_format, "info");
            let run = relance::daemon::RunOptions {
                as_of,
                dry_run,
                confirm,
                at,
            };
            let mut daemon = relance::daemon::Daemon::start(options(g), run)?;
            if !once {
                daemon.serve()?;
                return Ok(ExitCode::SUCCESS);
            }
            let report = daemon.evaluate(chrono::Utc::now())?;
            report.log();
            Ok(if report.held || report.failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::History { invoice, format } => {
            let config = relance::config::Config::load(&g.dir, g.config.as_deref())
                .map_err(|p| anyhow::anyhow!("{p}"))?;
            let path = config.path(&config.journal);
            let entries = match Journal::open_read_only(&path)? {
                Some(j) => j.history(invoice.as_deref())?,
                None => Vec::new(),
            };
            report::history(&mut out, &entries, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn explain(
    out: &mut dyn Write,
    project: &Project,
    index: usize,
    date: NaiveDate,
    journal: &relance::journal::JournalView,
    format: Format,
) -> Result<()> {
    let inv = &project.ledger.invoices[index];
    let marks = journal.marks(&inv.number);
    let mut trace = relance::engine::Trace::default();
    // An open invoice is decided by SPEC §4, a paid one may be owed its thank-you.
    let outcome = (inv.is_open() || inv.is_settled()).then(|| {
        project
            .evaluator()
            .evaluate(index, date, marks, Some(&mut trace))
    });
    let policy = outcome
        .as_ref()
        .and_then(|o| o.policy)
        .map(|p| &project.rulebook.policies[p]);
    // What fires, as the message it goes out in: grouped with the customer's
    // other reminders of the day when its stage says so, as the daemon sends it.
    let fires = outcome.as_ref().and_then(|o| o.fire).map(|f| {
        let planned = relance::engine::Planned {
            date,
            invoice: index,
            policy: outcome.as_ref().and_then(|o| o.policy).unwrap_or_default(),
            stage: f.stage,
            occurrence: f.occurrence,
        };
        project.as_sent(&planned, journal)
    });
    if format == Format::Json {
        let value = serde_json::json!({
            "invoice": inv.number,
            "as_of": date.to_string(),
            "open": inv.is_open(),
            "status": inv.status.as_str(),
            "amount_due": relance::locale::money(inv.amount_due()),
            "currency": inv.currency,
            "days_overdue": inv.days_overdue(date),
            "policy": policy.map(|p| p.name.clone()),
            "policies": trace.policies,
            "stages": trace.stages,
            "blocked": trace.blocked,
            "fires": fires,
            "skipped": outcome.as_ref().map(|o| o.skipped.iter().map(|s| policy.map_or(String::new(), |p| p.stages[s.stage].id.clone())).collect::<Vec<_>>()),
            "errors": outcome.as_ref().map(|o| o.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()),
            "journal": marks.iter().map(|m| serde_json::json!({"policy": m.policy, "stage": m.stage, "occurrence": m.occurrence, "state": m.state, "date": m.date})).collect::<Vec<_>>(),
        });
        report::json(out, &value)?;
        return Ok(());
    }
    // Money as the invoice's messages write it (`100,00 €` for a French invoice).
    let due =
        relance::locale::format_money(inv.amount_due(), &inv.currency, project.language_of(index));
    writeln!(
        out,
        "Invoice {} — {} ({})",
        inv.number, inv.customer_name, inv.customer_id
    )?;
    writeln!(
        out,
        "  {due} due {} ({} day(s) {}), status {}, as of {date}",
        inv.due_date,
        inv.days_overdue(date).abs(),
        if inv.days_overdue(date) >= 0 {
            "overdue"
        } else {
            "to go"
        },
        inv.status.as_str()
    )?;
    if let Some(hold) = project.rulebook.holds.active(inv, date) {
        writeln!(out, "  {}", hold.describe())?;
    }
    if inv.status == relance::model::Status::Disputed {
        writeln!(
            out,
            "  Disputed: nothing fires while the status is disputed; when it changes, its stages resume where they are."
        )?;
        return Ok(());
    }
    if !inv.is_open() {
        match (&fires, policy) {
            (Some(r), _) => writeln!(
                out,
                "  Paid, after a reminder: on {date} the thank-you ({}, {}) goes to {}: {}",
                r.template,
                r.channel.as_str(),
                r.to,
                r.subject
            )?,
            (None, Some(p)) if inv.is_settled() => {
                report::explain_stages(out, &trace)?;
                if p.on_paid().is_none() {
                    writeln!(
                        out,
                        "  Paid; policy {} sends no thank-you (no on_paid).",
                        p.name
                    )?;
                }
            }
            _ => writeln!(
                out,
                "  Not open (paid, void, credit or nothing left to pay): no reminder."
            )?,
        }
        return Ok(());
    }
    writeln!(out, "\nPolicies, highest priority first:")?;
    for p in &trace.policies {
        let has_applies_to = project
            .rulebook
            .policies
            .iter()
            .any(|q| q.name == p.policy && q.applies_to.is_some());
        let verdict = match &p.applies {
            None => "not evaluated (a higher policy was chosen)".to_string(),
            Some(Ok(true)) if !has_applies_to => {
                "no applies_to: covers every invoice → CHOSEN".to_string()
            }
            Some(Ok(true)) => "applies_to holds → CHOSEN".to_string(),
            Some(Ok(false)) => "applies_to is false".to_string(),
            Some(Err(e)) => format!("applies_to failed: {e}"),
        };
        writeln!(
            out,
            "  {:<20} priority {:>4}  {verdict}",
            p.policy, p.priority
        )?;
    }
    let Some(policy) = policy else {
        let errors: Vec<_> = outcome.iter().flat_map(|o| &o.errors).collect();
        if errors.is_empty() {
            writeln!(out, "\nNo policy matched: this invoice gets no reminder.")?;
        } else {
            writeln!(
                out,
                "\nAn applies_to failed, so no policy can be chosen: this invoice gets no reminder until it is fixed."
            )?;
            for e in errors {
                writeln!(out, "error: {e}")?;
            }
        }
        return Ok(());
    };
    let anchor = match policy.anchor {
        relance::rules::Anchor::DueDate => ("due_date", inv.due_date),
        relance::rules::Anchor::IssueDate => ("issue_date", inv.issue_date),
    };
    writeln!(
        out,
        "\nStages of {} (offsets from {} {}):",
        policy.name, anchor.0, anchor.1
    )?;
    report::explain_stages(out, &trace)?;
    if let Some(blocked) = &trace.blocked {
        writeln!(out, "\nOn {date}: nothing goes out: {blocked}.")?;
    }
    match &fires {
        Some(r) if r.error.is_some() => writeln!(
            out,
            "\nOn {date}: {} ({}) fires but cannot be sent: {}",
            relance::text::stage_label(r.stage, r.occurrence),
            r.channel.as_str(),
            r.error.as_deref().unwrap_or_default()
        )?,
        Some(r) => writeln!(
            out,
            "\nOn {date}: sends {} ({}) to {}: {}",
            relance::text::stage_label(r.stage, r.occurrence),
            r.channel.as_str(),
            r.to,
            r.subject
        )?,
        None if trace.blocked.is_some() => {}
        None => writeln!(out, "\nOn {date}: nothing fires.")?,
    }
    for e in outcome.iter().flat_map(|o| &o.errors) {
        writeln!(out, "error: {e}")?;
    }
    Ok(())
}
