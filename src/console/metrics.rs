//! `/metrics` in the Prometheus text format (reminders by state, channel, policy and stage; evaluations and reloads; open invoices and amounts due), `/healthz` and `/readyz`.

use std::path::Path;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use rust_decimal::prelude::ToPrimitive;

use super::{State, blocking, view};
use crate::config::JournalSetting;
use crate::daemon::{Outcome, Shared};
use crate::journal::Journal;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Result {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reminders {
    state: String,
    channel: String,
    policy: String,
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Currency {
    currency: String,
}

/// Seconds, from a tenth of a second to ten minutes: a reload of a small
/// folder takes milliseconds, a pass of a million invoices minutes.
fn seconds_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
    ])
}

/// What the daemon did since the process started, as it happened: the
/// rest of `/metrics` is read from the snapshot and the journal when asked.
pub(crate) struct Metrics {
    evaluations: Family<Result, Histogram, fn() -> Histogram>,
    reloads: Family<Result, Histogram, fn() -> Histogram>,
    delivery_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            evaluations: Family::new_with_constructor(seconds_histogram),
            reloads: Family::new_with_constructor(seconds_histogram),
            delivery_failures: Counter::default(),
        };
        // Both results from the start: a rate of failures is 0, not absent.
        for ok in [true, false] {
            let _ = metrics.evaluations.get_or_create(&result(ok));
            let _ = metrics.reloads.get_or_create(&result(ok));
        }
        metrics
    }
}

fn result(ok: bool) -> Result {
    Result {
        result: if ok { "ok" } else { "failed" },
    }
}

impl Metrics {
    /// Observes every reload and evaluation the daemon publishes.
    pub fn follow(&self, shared: &Shared) {
        let (evaluations, reloads, failures) = (
            self.evaluations.clone(),
            self.reloads.clone(),
            self.delivery_failures.clone(),
        );
        shared.listen(move |outcome| match outcome {
            Outcome::Reloaded(reload) => {
                reloads
                    .get_or_create(&result(reload.ok))
                    .observe(reload.took.as_secs_f64());
            }
            Outcome::Evaluated(evaluation) => {
                evaluations
                    .get_or_create(&result(evaluation.error.is_none()))
                    .observe(evaluation.took.as_secs_f64());
                if let Some(report) = &evaluation.report {
                    failures.inc_by(report.failed as u64);
                }
            }
        });
    }
}

/// `/metrics`: what the daemon did, what the journal holds, where the money stands.
pub(super) async fn metrics(axum::extract::State(app): State) -> Response {
    blocking(move || {
        let mut registry = Registry::with_prefix("relance");
        let status = app.shared.status();
        let project = &status.project;
        registry.register_with_unit(
            "evaluation_duration",
            "How long the daemon's evaluations took, by result",
            Unit::Seconds,
            app.metrics.evaluations.clone(),
        );
        registry.register_with_unit(
            "reload_duration",
            "How long the reloads of the folder took, by result (failed: the last good version stayed)",
            Unit::Seconds,
            app.metrics.reloads.clone(),
        );
        registry.register(
            "delivery_failures",
            "Deliveries that failed in this process's evaluations (each is retried)",
            app.metrics.delivery_failures.clone(),
        );
        let unix = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis() as f64 / 1000.0;
        let last_reload = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        last_reload.set(unix(status.loaded_at));
        registry.register_with_unit(
            "last_successful_reload_timestamp",
            "When the folder in use was loaded (at start or by the last good reload), Unix time",
            Unit::Seconds,
            last_reload,
        );
        if let Some(at) = status.evaluated_at {
            let last_evaluation = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            last_evaluation.set(unix(at));
            registry.register_with_unit(
                "last_successful_evaluation_timestamp",
                "When the last evaluation that went through ended, Unix time",
                Unit::Seconds,
                last_evaluation,
            );
        }
        let open = Family::<Currency, Gauge>::default();
        // Prometheus holds every value as a 64-bit float: the amounts are
        // exact decimals everywhere else, and become floats only here, for
        // graphs and alerts, never for arithmetic that matters.
        let due = Family::<Currency, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (currency, totals) in view::totals(project) {
            let label = Currency { currency };
            open.get_or_create(&label)
                .set(i64::try_from(totals.open_invoices).unwrap_or(i64::MAX));
            due.get_or_create(&label)
                .set(totals.open.and_then(|t| t.to_f64()).unwrap_or(f64::NAN));
        }
        registry.register("open_invoices", "Open invoices in the feeds, by currency", open);
        registry.register(
            "amount_due",
            "What the open invoices leave to pay, by currency (a float here only)",
            due,
        );
        let reminders = Family::<Reminders, Gauge>::default();
        match Journal::open_config_read_only(&project.config)
            .and_then(|j| j.map(|j| j.counts()).transpose())
        {
            Ok(counts) => {
                for count in counts.into_iter().flatten() {
                    let labels = Reminders {
                        state: count.state,
                        channel: count.channel,
                        policy: count.policy,
                        stage: count.stage,
                    };
                    reminders
                        .get_or_create(&labels)
                        .set(i64::try_from(count.count).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::warn!("console: /metrics: {e}"),
        }
        registry.register(
            "reminders",
            "Reminders in the journal, by state, channel, policy and stage",
            reminders,
        );
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
        }
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    })
    .await
}

/// `/healthz`: the process answers. Asked for JSON (`Accept:
/// application/json`), it says what this instance does too: its role
/// (`single`, or on a shared PostgreSQL journal `deciding` or
/// `delivering`) and its name in the lease.
pub(super) async fn healthz(
    axum::extract::State(app): State,
    headers: axum::http::HeaderMap,
) -> Response {
    let json = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if !json {
        return "ok\n".into_response();
    }
    let status = app.shared.status();
    axum::Json(serde_json::json!({
        "status": "ok",
        "role": status.role,
        "instance": status.instance,
    }))
    .into_response()
}

/// `/readyz`: a snapshot without errors is loaded and the journal can be
/// written; 503 saying which is not so otherwise.
pub(super) async fn readyz(axum::extract::State(app): State) -> Response {
    blocking(move || {
        let status = app.shared.status();
        let project = &status.project;
        let mut missing = Vec::new();
        if project.has_rule_errors() {
            missing.push("the folder in use has errors".to_string());
        }
        match &project.config.journal {
            JournalSetting::File(path) => {
                let journal = project.config.path(path);
                if let Err(e) = writable(&journal) {
                    missing.push(format!(
                        "the journal {} cannot be written: {e}",
                        journal.display()
                    ));
                }
            }
            JournalSetting::Postgres(_) => {
                if let Some(e) = Journal::probe(&project.config) {
                    missing.push(format!("the journal cannot be reached: {e}"));
                }
            }
        }
        if missing.is_empty() {
            "ready\n".into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", missing.join("; ")),
            )
                .into_response()
        }
    })
    .await
}

/// Whether the journal can be written: the file opens for writing (it is
/// not changed), and its folder takes the files SQLite writes beside it;
/// before it exists, the nearest folder that does takes a new file (a
/// file where a folder is expected takes none).
fn writable(journal: &Path) -> std::io::Result<()> {
    if journal.exists() {
        std::fs::OpenOptions::new().append(true).open(journal)?;
    }
    let mut folder = journal.parent().unwrap_or(Path::new("."));
    while !folder.as_os_str().is_empty() && !folder.exists() {
        folder = folder.parent().unwrap_or(Path::new("."));
    }
    if folder.as_os_str().is_empty() {
        folder = Path::new(".");
    }
    tempfile::tempfile_in(folder).map(|_| ())
}
