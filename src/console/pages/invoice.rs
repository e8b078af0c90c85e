//! `/invoices/{number}`: what `explain` says of the invoice (policy chosen and why, every stage, holds, promises, calendar moves), its history and its coming messages.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::plan::message_href;
use super::{bad_request, customer_href, failed, layout};
use crate::console::api::date_param;
use crate::console::auth::Caller;
use crate::console::text::Lang;
use crate::console::{App, State, blocking};
use crate::journal::JournalRow;
use crate::locale::format_money;
use crate::report::explain::{Explanation, explain};
use crate::text::stage_label;

#[derive(Deserialize)]
pub(crate) struct InvoiceQuery {
    as_of: Option<String>,
}

pub(crate) async fn page(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    Query(q): Query<InvoiceQuery>,
) -> Response {
    blocking(move || invoice_page(&app, &caller, &number, &q)).await
}

fn invoice_page(app: &Arc<App>, caller: &Caller, number: &str, q: &InvoiceQuery) -> Response {
    let w = caller.lang;
    let status = app.shared.status();
    let project = &status.project;
    let date = match date_param("as_of", q.as_of.as_deref()) {
        Ok(date) => date.unwrap_or_else(|| status.today(Utc::now())),
        Err(why) => return bad_request(caller, &why),
    };
    let journal = match app.cache.journal(project) {
        Ok(journal) => journal,
        Err(e) => return failed(caller, &e),
    };
    let explanation = match explain(project, number, date, &journal) {
        Ok(explanation) => explanation,
        Err(e) => return failed(caller, &e),
    };
    let Some(index) = project.ledger.find(number) else {
        return failed(
            caller,
            &crate::error::Error::UnknownInvoice(number.to_string()),
        );
    };
    let inv = &project.ledger.invoices[index];
    let mut text = Vec::new();
    if let Err(e) = explanation.write_text(&mut text) {
        return failed(caller, &crate::error::Error::Output(e));
    }
    let history = match app.cache.history(project) {
        Ok(rows) => rows,
        Err(e) => return failed(caller, &e),
    };
    let own: Vec<&JournalRow> = history
        .iter()
        .filter(|r| r.identity.invoice == number)
        .collect();
    let days = crate::impact::HORIZON_DAYS;
    let upcoming = match app.cache.plan(project, date, days) {
        Ok(view) => view,
        Err(e) => return failed(caller, &e),
    };
    let coming: Vec<usize> = upcoming
        .plan
        .reminders
        .iter()
        .enumerate()
        .filter(|(_, r)| r.invoice == index)
        .map(|(i, _)| i)
        .collect();
    let messages =
        upcoming
            .project
            .render_rows(&upcoming.plan.reminders, &upcoming.messages, &coming, false);
    let hold = project.rulebook.holds.active(inv, date);
    let money = |amount| format_money(amount, &inv.currency, w.code());
    let body = html! {
        dl.facts #invoice data-invoice=(inv.number) {
            dt { (w.t("Customer")) } dd { a href=(customer_href(&inv.customer_id)) { (inv.customer_name) } " (" (inv.customer_id) ")" }
            dt { (w.t("Status")) } dd #status { (inv.status.as_str()) }
            dt { (w.t("Amount due")) } dd { (money(inv.amount_due())) }
            dt { (w.t("Issued")) } dd { (inv.issue_date) }
            dt { (w.t("Due date")) } dd { (inv.due_date) }
            dt { (w.t("Days late")) } dd { (explanation.days_overdue) }
            dt { (w.t("Hold")) } dd #hold { @match hold { Some(h) => (h.describe()), None => "—" } }
            dt { (w.t("Promise to pay")) } dd #promise { @match inv.promise_date { Some(d) => (d), None => "—" } }
        }
        h2 { (w.t("Explanation")) " — " (w.t("As of")) " " (date) }
        (explanation_tables(&explanation, w))
        pre #explanation { (String::from_utf8_lossy(&text)) }
        h2 { (w.t("Upcoming messages")) }
        @if messages.is_empty() {
            p.muted #no-upcoming { (w.t("Nothing planned in the window.")) }
        } @else {
            table #upcoming {
                thead { tr { th { (w.t("Date")) } th { (w.t("Stage")) } th { (w.t("Channel")) } th { (w.t("To")) } th { (w.t("Subject")) } } }
                tbody { @for m in &messages {
                    tr.reminder data-date=(m.date) data-stage=(m.stage) {
                        td { (m.date) } td { (stage_label(m.stage, m.occurrence)) } td { (m.channel.as_str()) } td { (m.to) }
                        td { a.message href=(message_href(m.invoice, m.date, date, days)) { (m.subject) } }
                    }
                } }
            }
        }
        h2 { (w.t("History")) }
        (super::history_table(&own, w, false))
    };
    layout(caller, &format!("{} {}", w.t("Invoice"), inv.number), body).into_response()
}

/// The policies weighed and the chosen one's stages, as tables.
fn explanation_tables(e: &Explanation, w: Lang) -> Markup {
    html! {
        table #policies {
            caption { (w.t("Policies, highest priority first")) }
            thead { tr { th { (w.t("Policy")) } th.num { (w.t("Priority")) } th { (w.t("applies_to")) } } }
            tbody { @for p in &e.policies {
                tr.policy data-policy=(p.policy) class=[(e.policy == Some(p.policy.as_str())).then_some("chosen")] {
                    td { (p.policy) @if e.policy == Some(p.policy.as_str()) { " — " strong { (w.t("chosen")) } } }
                    td.num { (p.priority) }
                    td { @match &p.applies {
                        None => "—",
                        Some(Ok(value)) => (value),
                        Some(Err(error)) => span.problem { (error) },
                    } }
                }
            } }
        }
        @if !e.stages.is_empty() {
            table #stages {
                caption { (w.t("Stages")) }
                thead { tr { th { (w.t("Stage")) } th { (w.t("Reached on")) } th { (w.t("when")) } th { (w.t("in the journal")) } th { (w.t("Verdict")) } } }
                tbody { @for s in &e.stages {
                    tr.stage data-stage=(s.stage) {
                        td { (stage_label(&s.stage, s.occurrence)) }
                        td {
                            @if let Some(d) = s.date { (d) }
                            @if let Some(from) = s.moved_from { " (" (w.t("moved from")) " " (from) @if let Some(why) = &s.moved_because { ": " (why) } ")" }
                        }
                        td { @match &s.when { None => "—", Some(Ok(v)) => (v), Some(Err(error)) => span.problem { (error) } } }
                        td { @if let Some(state) = s.journal { (state.as_str()) } }
                        td.verdict { (verdict(s.verdict)) }
                    }
                } }
            }
        }
        @if let Some(blocked) = &e.blocked { p.warning #blocked { (w.t("Nothing goes out")) ": " (blocked) } }
        @if let Some(fires) = &e.fires {
            p #fires { (w.t("Fires today")) ": " (stage_label(fires.stage, fires.occurrence)) " — " (fires.subject)
                @if let Some(error) = &fires.error { " " span.problem { (error) } } }
        }
    }
}

fn verdict(verdict: crate::engine::Verdict) -> String {
    serde_json::to_value(verdict)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
