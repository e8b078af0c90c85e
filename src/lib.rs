//! relance: a payment-reminder (dunning) engine.
//!
//! Data flows one way: feeds are read into the model, the engine decides
//! with the rules (policies, holds, Rhai scripts) which reminders are due,
//! templates render them into messages, delivery sends them and the journal
//! remembers what was sent. ARCHITECTURE.md at the repository's root is the
//! map of the modules; this page is the surface the command line, the daemon
//! and any server use:
//!
//! - load a folder: [`Project::load`] (a [`Project`] never changes; a reload
//!   builds a new one), and [`Project::check`] it;
//! - plan a window: [`Project::plan`] against [`Project::journal_view`];
//! - render the outgoing messages: [`Project::render`] (one [`Message`] row
//!   per reminder, with the message it goes out in);
//! - explain an invoice: [`explain`] gives a serialisable [`Explanation`];
//! - compare two versions of the rules over the coming days: [`impact()`] of
//!   a [`Baseline`] and the folder gives an [`Impact`];
//! - run the policy tests (`rules/*.test.yaml`): [`run_tests`] on
//!   [`test_files`], with a project [`Project::load_rules`] loads without
//!   its feeds;
//! - run one daemon pass without signals or a watcher: [`Daemon::open`] then
//!   [`Daemon::evaluate`] (`relance run` adds them with [`Daemon::start`] and
//!   [`Daemon::serve`]);
//! - replay the rules on the feeds' history: [`Backtest::run`];
//! - record a hold or a promise to pay in `rules/holds.yaml` from a form,
//!   remove a hold: [`read_holds_file`], [`add_hold`], [`add_promise`],
//!   [`remove_hold`];
//! - where the money stands: [`report::receivables()`];
//! - list the journal, one customer's contact history: [`history()`];
//! - re-queue failed reminders, approve or reject those awaiting approval,
//!   invoice by invoice: [`retry()`], [`decide_approvals`];
//! - serve the web console on what a daemon publishes: [`Console::start`]
//!   with [`Daemon::shared`] and [`ConsoleSettings::of`];
//! - the command outputs: [`report`]; each command of the binary as one call
//!   that prints what it prints and says how it ended:
//!   [`report::commands`] (`relance run` without `--once`: [`serve()`]).
//!
//! Errors are one type, [`Error`]; problems that loading collects and goes
//! on after are [`Problem`]s, each located as `file:line:col`.

// A panic on what a feed, a rule or a template holds would stop every other
// invoice: the library handles every failure as a value (tests may panic).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub(crate) mod address;
pub(crate) mod backtest;
pub(crate) mod calendar;
pub(crate) mod config;
pub(crate) mod console;
pub(crate) mod daemon;
pub(crate) mod deliver;
pub(crate) mod diagnostics;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod feed;
pub(crate) mod impact;
pub(crate) mod journal;
pub(crate) mod locale;
pub(crate) mod model;
pub(crate) mod money;
pub(crate) mod policy_tests;
pub(crate) mod project;
pub(crate) mod render;
pub mod report;
pub(crate) mod rules;
pub(crate) mod text;

pub use backtest::Backtest;
pub use calendar::parse_time;
pub use config::{Config, JournalSetting, PostgresJournal};
pub use console::{Console, ConsoleSettings, serve};
pub use daemon::{Daemon, Report, Role, RunOptions, Shared, Status};
pub use diagnostics::{Location, Problem, Problems, Severity};
pub use engine::{Plan, Reminder};
pub use error::{Error, Result};
pub use impact::{Baseline, HORIZON_DAYS, Impact, impact};
pub use journal::{Awaiting, Copied, Journal, JournalView};
pub use model::{Id, InvoiceId};
pub use policy_tests::{Expected, TestCase, TestFile, check_tests, run_tests, test_files};
pub use project::decisions::{Approval, AwaitingFilter, decide_approvals, retry};
pub use project::history::{HistoryFilter, history};
pub use project::{Languages, Message, Options, Project};
pub use report::explain::{Explanation, explain};
pub use rules::{
    HoldEntryView, HoldsFile, NewHold, NewPromise, PolicyId, PromiseView, StageId, add_hold,
    add_promise, read_holds_file, remove_hold,
};
pub use text::escape_controls;

/// What the micro-benchmarks (`benches/`), the property tests
/// (`tests/properties.rs`) and the fuzz targets (`fuzz/`) reach below the
/// API: not an API, and it changes whenever the code under it does.
#[doc(hidden)]
pub mod internals {
    pub use crate::config::FeedConfig;
    pub use crate::feed::load_feeds;
    pub use crate::feed::{parse_amount, parse_date};
    pub use crate::journal::{Identity, JournalRow, State};
    pub use crate::locale::format_amount;
    pub use crate::money::{DiscountTerms, late_interest, parse_decimal, recovery_indemnity};
    pub use crate::rules::{CustomerView, InvoiceView, Variables};
}
