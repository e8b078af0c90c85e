//! `/invoices/{number}`: what `explain` says of the invoice (policy chosen and why, every stage, holds, promises, calendar moves), its history and its coming messages.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::plan::message_href;
use super::{bad_request, customer_href, failed, layout};
use crate::console::api::date_param;
use crate::console::auth::{Caller, forbidden};
use crate::console::text::Lang;
use crate::console::{App, State, actions, blocking, status_of};
use crate::journal::JournalRow;
use crate::locale::format_money;
use crate::report::explain::{Explanation, explain};
use crate::rules::{NewHold, NewPromise, add_hold, add_promise, read_holds_file, remove_hold};
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
    blocking(move || invoice_page(&app, &caller, &number, q.as_of.as_deref(), None)).await
}

/// The invoice's page; `notice`: why the action just asked for was not
/// done, with its status.
fn invoice_page(
    app: &Arc<App>,
    caller: &Caller,
    number: &str,
    as_of: Option<&str>,
    notice: Option<(StatusCode, String)>,
) -> Response {
    let w = caller.lang;
    let status = app.shared.status();
    let project = &status.project;
    let date = match date_param("as_of", as_of) {
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
    let file = match read_holds_file(&actions::rules_dir(app)) {
        Ok(file) => file,
        Err(e) => return failed(caller, &e),
    };
    let money = |amount| format_money(amount, &inv.currency, w.code());
    let body = html! {
        dl.facts #invoice data-invoice=(inv.number) {
            dt { (w.t("Customer")) } dd { a href=(customer_href(&inv.bill_to.id)) { (inv.bill_to.name) } " (" (inv.bill_to.id) ")" }
            dt { (w.t("Status")) } dd #status { (inv.status.as_str()) }
            dt { (w.t("Amount due")) } dd { (money(inv.amount_due())) }
            dt { (w.t("Issued")) } dd { (inv.issue_date) }
            dt { (w.t("Due date")) } dd { (inv.due_date) }
            dt { (w.t("Days late")) } dd { (explanation.days_overdue) }
            dt { (w.t("Hold")) } dd #hold { @match hold { Some(h) => (h.describe()), None => "—" } }
            dt { (w.t("Promise to pay")) } dd #promise { @match inv.promise_date { Some(d) => (d), None => "—" } }
        }
        @if let Some((_, why)) = &notice { p.problem #notice { (why) } }
        (actions_section(caller, inv, &file))
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
    let page = layout(caller, &format!("{} {}", w.t("Invoice"), inv.number), body);
    match notice {
        Some((status, _)) => (status, page).into_response(),
        None => page.into_response(),
    }
}

/// The forms of the actions: the holds of `rules/holds.yaml` on this invoice
/// or its customer, each with its removal; a new hold; a promise to pay.
/// Each carries the session's anti-CSRF token and the file's version.
fn actions_section(
    caller: &Caller,
    inv: &crate::model::Invoice,
    file: &crate::rules::HoldsFile,
) -> Markup {
    let w = caller.lang;
    let action = |what: &str| format!("{}/{what}", super::invoice_href(&inv.number));
    let concerns = |h: &&crate::rules::HoldEntryView| {
        h.invoice.as_deref() == Some(&*inv.number)
            || h.customer.as_deref() == Some(&*inv.bill_to.id)
    };
    html! {
        section #actions {
            h2 { (w.t("Holds")) }
            @for h in file.holds.iter().filter(concerns) {
                form.unhold method="post" action=(action("unhold")) data-hold=(h.id) {
                    input type="hidden" name="csrf" value=(caller.csrf());
                    input type="hidden" name="version" value=(file.version);
                    input type="hidden" name="id" value=(h.id);
                    @match (&h.invoice, &h.customer) {
                        (Some(i), _) => { (w.t("Invoice")) " " (i) },
                        (None, Some(c)) => { (w.t("Customer")) " " (c) },
                        (None, None) => {},
                    }
                    " — " (w.t("Until")) " " @match h.until { Some(d) => (d), None => "—" }
                    @if !h.reason.is_empty() { ": " (h.reason) }
                    " "
                    button type="submit" { (w.t("Remove the hold")) }
                }
            }
            form #hold-form method="post" action=(action("hold")) {
                input type="hidden" name="csrf" value=(caller.csrf());
                input type="hidden" name="version" value=(file.version);
                label { (w.t("Hold until")) " " input type="date" name="until"; }
                " "
                label { (w.t("Reason")) " " input name="reason" required; }
                " "
                button type="submit" { (w.t("Put on hold")) }
            }
            form #promise-form method="post" action=(action("promise")) {
                input type="hidden" name="csrf" value=(caller.csrf());
                input type="hidden" name="version" value=(file.version);
                label { (w.t("Promise to pay on")) " " input type="date" name="date" required; }
                " "
                label { (w.t("Note")) " " input name="note"; }
                " "
                button type="submit" { (w.t("Record the promise")) }
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct HoldForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
pub(crate) struct PromiseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
pub(crate) struct UnholdForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    id: String,
}

/// The version a form was filled from: none given, none checked.
fn version(given: &str) -> Option<&str> {
    Some(given.trim()).filter(|v| !v.is_empty())
}

/// After an action: back to the invoice's page (which shows its effect),
/// or the page with why it was not done.
fn done(
    app: &Arc<App>,
    caller: &Caller,
    number: &str,
    result: crate::error::Result<()>,
) -> Response {
    match result {
        Ok(()) => Redirect::to(&super::invoice_href(number)).into_response(),
        Err(e) => invoice_page(
            app,
            caller,
            number,
            None,
            Some((status_of(&e), e.to_string())),
        ),
    }
}

/// The invoice's page again, saying why a form was refused (a bad date).
fn refused(app: &Arc<App>, caller: &Caller, number: &str, why: String) -> Response {
    done(
        app,
        caller,
        number,
        Err(crate::error::Error::InvalidHold { message: why }),
    )
}

/// `POST /invoices/{number}/hold` (`until`, `reason`): a hold on the invoice.
pub(crate) async fn hold(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    Form(form): Form<HoldForm>,
) -> Response {
    if !caller.may_post(&form.csrf) {
        return forbidden();
    }
    blocking(move || {
        let until = match date_param("until", Some(&form.until)) {
            Ok(until) => until,
            Err(why) => return refused(&app, &caller, &number, why),
        };
        let hold = NewHold {
            invoice: Some(number.clone()),
            customer: None,
            until,
            reason: form.reason.trim().to_string(),
        };
        let what = format!(
            "hold on invoice {number} until {}: {}",
            form.until, hold.reason
        );
        let written = actions::write(&app, &what, |rules| {
            add_hold(rules, &hold, version(&form.version))
        });
        done(&app, &caller, &number, written.map(|_| ()))
    })
    .await
}

/// `POST /invoices/{number}/promise` (`date`, `note`): a promise to pay.
pub(crate) async fn promise(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    Form(form): Form<PromiseForm>,
) -> Response {
    if !caller.may_post(&form.csrf) {
        return forbidden();
    }
    blocking(move || {
        let date = date_param("date", Some(&form.date)).and_then(|date| {
            date.ok_or_else(|| {
                "date: expected the day the customer promised to pay (YYYY-MM-DD)".to_string()
            })
        });
        let date = match date {
            Ok(date) => date,
            Err(why) => return refused(&app, &caller, &number, why),
        };
        let promise = NewPromise {
            invoice: number.clone(),
            date,
            note: form.note.trim().to_string(),
        };
        let what = format!("promise to pay invoice {number} by {date}");
        let written = actions::write(&app, &what, |rules| {
            add_promise(rules, &promise, version(&form.version))
        });
        done(&app, &caller, &number, written)
    })
    .await
}

/// `POST /invoices/{number}/unhold` (`id`): removes a hold.
pub(crate) async fn unhold(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    Form(form): Form<UnholdForm>,
) -> Response {
    if !caller.may_post(&form.csrf) {
        return forbidden();
    }
    blocking(move || {
        let what = format!("hold {} removed (invoice {number}'s page)", form.id);
        let written = actions::write(&app, &what, |rules| {
            remove_hold(rules, &form.id, version(&form.version))
        });
        done(&app, &caller, &number, written)
    })
    .await
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
