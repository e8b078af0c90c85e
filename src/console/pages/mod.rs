//! The console's pages, rendered on the server (no script, nothing loaded from elsewhere): the layout, the overview, a customer, the journal and the rules.
//!
//! Every value from a feed, a rule or a template goes through maud's
//! escaping; a rendered HTML message is shown only inside a sandboxed
//! `iframe srcdoc` ([`plan::message`]).

pub(super) mod invoice;
pub(super) mod plan;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::auth::Caller;
use super::text::Lang;

use super::{App, State, blocking, status_of};
use crate::daemon::Status;
use crate::diagnostics::Problems;
use crate::error::Error;
use crate::journal::{JournalRow, State as JournalState};
use crate::locale::format_money;
use crate::report::receivables::receivables_fragment;
use crate::text::stage_label;

/// Plain, printable, no web font: what a finance manager prints comes out as on screen.
const CSS: &str = "\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2433;background:#fff}\
header{display:flex;gap:1.2em;align-items:center;padding:.6em 1.2em;background:#1d2433;color:#fff}\
header a{color:#fff;text-decoration:none}header a:hover{text-decoration:underline}\
header .brand{font-weight:700}header .spacer{flex:1}\
header form{margin:0}header button{background:none;border:1px solid #fff;color:#fff;border-radius:3px;cursor:pointer}\
main{padding:1em 1.2em;max-width:1200px}\
h1{font-size:1.4em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}\
table{border-collapse:collapse;margin:.4em 0 1em;width:100%}\
th,td{border-bottom:1px solid #dde1e8;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f3f5f8;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
.problem{color:#a40000}.warning{color:#8a5a00}.ok{color:#1b6e20}.muted{color:#667}\
form.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;margin-bottom:.8em}\
form.filters label{display:flex;flex-direction:column;font-size:.85em}\
pre{background:#f6f7f9;padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere}\
iframe{width:100%;height:480px;border:1px solid #dde1e8}\
.pager{display:flex;gap:1em;align-items:center}\
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.facts dt{font-weight:600}dl.facts dd{margin:0}\
ol.ladder li{margin:.2em 0}\
a{color:#1a56db}header nav{display:flex;gap:1.2em}header button{padding:.15em .6em}\
input,select,button{font:inherit}input,select{padding:.2em .4em;border:1px solid #c5cbd6;border-radius:4px;background:#fff}\
button{padding:.25em .9em;border:1px solid #1d4ed8;border-radius:4px;background:#2563eb;color:#fff;cursor:pointer}\
tbody tr:hover{background:#f8fafc}caption{text-align:left;font-weight:600;padding:.3em 0}\
td.num,th.num,#plan td:nth-child(-n+2),#upcoming td:first-child,table.history td:nth-child(-n+2){white-space:nowrap}\
#actions{background:#f6f7f9;border:1px solid #dde1e8;border-radius:6px;padding:0 1em .4em;width:max-content;max-width:100%}\
#actions h2{margin-top:.6em}#actions form{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin:.5em 0}\
#receivables .rv{margin:0;padding:0;max-width:none}form.filters input:not([type]),form.filters input[type=search]{width:9em}\
@media print{header,form,.pager{display:none}main{max-width:none}}";

/// The page around `body`: the navigation, the language switch and, with
/// a token, the sign-out form (with its anti-CSRF token).
pub(crate) fn layout(caller: &Caller, title: &str, body: Markup) -> Markup {
    let w = caller.lang;
    let other = w.other();
    html! {
        (DOCTYPE)
        html lang=(w.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — relance" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a.brand href="/" { "relance" }
                    nav {
                        a #nav-overview href="/" { (w.t("Overview")) } " "
                        a #nav-plan href="/plan" { (w.t("Plan")) } " "
                        a #nav-journal href="/journal" { (w.t("Journal")) } " "
                        a #nav-rules href="/rules" { (w.t("Rules")) }
                    }
                    span.spacer {}
                    a.lang href={ "?lang=" (other.code()) } lang=(other.code()) { (other.code().to_uppercase()) }
                    @if caller.signed_in && caller.session.is_some() {
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(caller.csrf());
                            button type="submit" { (w.t("Sign out")) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page as a response.
fn page(caller: &Caller, title: &str, body: Markup) -> Response {
    layout(caller, title, body).into_response()
}

/// A page saying what went wrong (an unknown invoice: 404).
pub(super) fn failed(caller: &Caller, error: &Error) -> Response {
    let body = html! { p.problem { (error.to_string()) } };
    (
        status_of(error),
        layout(caller, caller.lang.t("Not found"), body),
    )
        .into_response()
}

/// A 400 page for a filter that does not parse.
pub(super) fn bad_request(caller: &Caller, why: &str) -> Response {
    let body = html! { p.problem { (why) } };
    (StatusCode::BAD_REQUEST, layout(caller, "400", body)).into_response()
}

/// Percent-encodes everything but the unreserved characters: an invoice
/// number in a path or a query (`/`, `?`, `#`, spaces and all).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

pub(crate) fn invoice_href(number: &str) -> String {
    format!("/invoices/{}", encode(number))
}

pub(crate) fn customer_href(id: &str) -> String {
    format!("/customers/{}", encode(id))
}

/// A query value given and not blank.
pub(crate) fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A time as a person reads it in the config's time zone.
pub(crate) fn when(status: &Status, at: DateTime<Utc>) -> String {
    at.with_timezone(&status.project.config.timezone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// Problems as `file:line: message`, one a line.
pub(crate) fn problems_list(problems: &Problems) -> Markup {
    html! {
        ul.problems {
            @for p in problems.iter() {
                li class=(if p.is_error() { "problem" } else { "warning" }) { code { (p.to_string()) } }
            }
        }
    }
}

/// The last reload (or the start), with every problem of a broken edit.
fn reload_facts(status: &Status, w: Lang) -> Markup {
    html! {
        @match &status.reload {
            Some(reload) => {
                p #last-reload {
                    (w.t("Last reload")) ": " (when(status, reload.at)) " — "
                    @if reload.ok { span.ok { (w.t("ok")) } } @else { span.problem { (w.t("failed")) } }
                    @if !reload.changed.is_empty() { " (" (reload.changed.join(", ")) ")" }
                }
                @if !reload.ok {
                    h2 { (w.t("Problems of the last edit (the previous version stays in use)")) }
                    (problems_list(&reload.problems))
                }
            }
            None => p #last-reload { (w.t("Loaded")) ": " (when(status, status.loaded_at)) }
        }
    }
}

/// `/`: the next 14 days by day and stage, the receivables, the last
/// evaluation and the last reload.
pub(super) async fn overview(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
) -> Response {
    blocking(move || overview_page(&app, &caller)).await
}

fn overview_page(app: &Arc<App>, caller: &Caller) -> Response {
    let w = caller.lang;
    let status = app.shared.status();
    let today = status.today(Utc::now());
    let receivables = match app.cache.receivables(&status.project, today) {
        Ok(receivables) => receivables,
        Err(e) => return failed(caller, &e),
    };
    let planned: usize = receivables.upcoming.iter().map(|u| u.count).sum();
    let body = html! {
        // `relance report --format html`'s own body: the next 14 days by
        // day and stage, the aging per currency, the customers; it escapes
        // what it shows itself.
        div #receivables { (PreEscaped(receivables_fragment(&receivables, w.code()))) }
        p #planned { (planned) " " (w.t("reminders")) " — " a href="/plan" { (w.t("Plan")) } }
        h2 { (w.t("Last evaluation")) }
        (evaluation_facts(&status, w))
        h2 { (w.t("Last reload")) }
        (reload_facts(&status, w))
    };
    page(caller, w.t("Overview"), body)
}

fn evaluation_facts(status: &Status, w: Lang) -> Markup {
    html! {
        @if !status.delivers {
            p #last-evaluation.muted { (w.t("This console delivers nothing (relance serve): evaluations are the daemon's.")) }
        } @else {
            @match &status.evaluation {
                None => p #last-evaluation { (w.t("none yet")) },
                Some(e) => p #last-evaluation {
                    (when(status, e.at)) " — "
                    @match (&e.report, &e.error) {
                        (Some(r), _) => {
                            span.ok { (w.t("ok")) } ": "
                            (r.due) " " (w.t("due")) ", " (r.sent) " " (w.t("sent")) ", "
                            (r.failed) " " (w.t("failed")) ", " (r.waiting) " " (w.t("waiting"))
                            @if r.held { ", " span.problem { (w.t("held back (over limits.max_per_run)")) } }
                        }
                        (None, error) => { span.problem { (w.t("failed")) ": " (error.as_deref().unwrap_or("")) } }
                    }
                    " (" (format!("{:.3}", e.took.as_secs_f64())) " s)"
                },
            }
        }
    }
}

/// A journal row's date, state and detail, as `history` shows them.
fn history_table(rows: &[&JournalRow], w: Lang, with_invoice: bool) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { (w.t("Nothing in the journal.")) }
        } @else {
            table.history {
                thead { tr {
                    th { (w.t("Updated")) } th { (w.t("Date")) }
                    @if with_invoice { th { (w.t("Invoice")) } th { (w.t("Customer")) } }
                    th { (w.t("Policy")) } th { (w.t("Stage")) } th { (w.t("State")) } th { (w.t("Channel")) }
                    th { (w.t("Recipient")) } th.num { (w.t("Attempts")) } th { (w.t("Detail")) }
                } }
                tbody {
                    @for r in rows {
                        tr.journal-row class=(r.state.as_str()) data-invoice=(r.identity.invoice) {
                            td { (r.updated_at) } td { (r.date) }
                            @if with_invoice {
                                td { a href=(invoice_href(&r.identity.invoice)) { (r.identity.invoice) } }
                                td { @if let Some(c) = &r.customer_id { a href=(customer_href(c)) { (c) } } }
                            }
                            td { (r.identity.policy) } td { (stage_label(&r.identity.stage, r.identity.occurrence)) }
                            td.state { (r.state.as_str()) } td { (r.channel) } td { (r.recipient) }
                            td.num { (r.attempts) }
                            td {
                                @match (&r.last_error, r.state) {
                                    (Some(reason), JournalState::Failed) => span.problem { (reason) },
                                    (Some(reason), _) => (reason),
                                    (None, _) => (r.subject),
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `/customers/{id}`: its invoices, totals and everything sent to it.
pub(super) async fn customer(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    blocking(move || customer_page(&app, &caller, &id)).await
}

fn customer_page(app: &Arc<App>, caller: &Caller, id: &str) -> Response {
    let w = caller.lang;
    let status = app.shared.status();
    let project = &status.project;
    let ledger = &project.ledger;
    let today = status.today(Utc::now());
    let Some(customer) = ledger.customers.iter().find(|c| *c.id == *id) else {
        let body = html! { p.problem { (w.t("Unknown customer")) ": " (id) } };
        return (
            StatusCode::NOT_FOUND,
            layout(caller, w.t("Not found"), body),
        )
            .into_response();
    };
    let invoices: Vec<&crate::model::Invoice> = ledger
        .invoices
        .iter()
        .filter(|i| *i.bill_to.id == *id)
        .collect();
    let mut due: BTreeMap<&str, (Decimal, Decimal)> = BTreeMap::new();
    for inv in invoices.iter().filter(|i| i.is_open()) {
        let entry = due.entry(&inv.currency).or_default();
        entry.0 += inv.amount_due();
        if inv.days_overdue(today) > 0 {
            entry.1 += inv.amount_due();
        }
    }
    let history = match app.cache.history(project) {
        Ok(rows) => rows,
        Err(e) => return failed(caller, &e),
    };
    let sent: Vec<&JournalRow> = history
        .iter()
        .filter(|r| r.customer_id.as_deref() == Some(id))
        .collect();
    let money = |amount: Decimal, currency: &str| format_money(amount, currency, w.code());
    let body = html! {
        dl.facts #customer data-customer=(id) {
            dt { "id" } dd { (id) }
            dt { "email" } dd { (customer.email) }
            @if !customer.tags.is_empty() { dt { "tags" } dd { (customer.tags.join(", ")) } }
        }
        h2 { (w.t("Amounts")) }
        table #customer-totals {
            thead { tr { th { (w.t("Currency")) } th.num { (w.t("open")) } th.num { (w.t("overdue")) } } }
            tbody { @for (currency, (open, overdue)) in &due {
                tr { td { (currency) } td.num { (money(*open, currency)) } td.num { (money(*overdue, currency)) } }
            } }
        }
        h2 { (w.t("Invoices")) }
        table #customer-invoices {
            thead { tr {
                th { (w.t("Invoice")) } th { (w.t("Status")) } th { (w.t("Issued")) } th { (w.t("Due date")) }
                th.num { (w.t("Amount due")) } th.num { (w.t("Days late")) }
            } }
            tbody { @for inv in &invoices {
                tr.invoice data-invoice=(inv.number) {
                    td { a href=(invoice_href(&inv.number)) { (inv.number) } }
                    td { (inv.status.as_str()) } td { (inv.issue_date) } td { (inv.due_date) }
                    td.num { (money(inv.amount_due(), &inv.currency)) }
                    td.num { @if inv.is_open() && inv.days_overdue(today) > 0 { (inv.days_overdue(today)) } }
                }
            } }
        }
        h2 { (w.t("Sent to this customer")) }
        (history_table(&sent, w, true))
    };
    page(caller, &format!("{} — {}", customer.name, id), body)
}

#[derive(Deserialize)]
pub(super) struct JournalQuery {
    state: Option<String>,
    channel: Option<String>,
    invoice: Option<String>,
    customer: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<String>,
}

/// Rows of the journal a page shows.
const JOURNAL_PAGE: usize = 100;

/// `/journal`: `history` with filters, and the failed deliveries with their error.
pub(super) async fn journal(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
    Query(q): Query<JournalQuery>,
) -> Response {
    blocking(move || journal_page(&app, &caller, &q)).await
}

fn journal_page(app: &Arc<App>, caller: &Caller, q: &JournalQuery) -> Response {
    let w = caller.lang;
    let status = app.shared.status();
    let (from, to) = match (
        super::api::date_param("from", q.from.as_deref()),
        super::api::date_param("to", q.to.as_deref()),
    ) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(why), _) | (_, Err(why)) => return bad_request(caller, &why),
    };
    let rows = match app.cache.history(&status.project) {
        Ok(rows) => rows,
        Err(e) => return failed(caller, &e),
    };
    let (state, channel, invoice, customer) = (
        given(&q.state),
        given(&q.channel),
        given(&q.invoice),
        given(&q.customer),
    );
    let in_range = |date: &str| {
        let date: Option<NaiveDate> = date.parse().ok();
        from.is_none_or(|f| date.is_some_and(|d| d >= f))
            && to.is_none_or(|t| date.is_some_and(|d| d <= t))
    };
    let matching: Vec<&JournalRow> = rows
        .iter()
        .filter(|r| state.is_none_or(|s| r.state.as_str() == s))
        .filter(|r| channel.is_none_or(|c| r.channel == c))
        .filter(|r| invoice.is_none_or(|i| r.identity.invoice == i))
        .filter(|r| customer.is_none_or(|c| r.customer_id.as_deref() == Some(c)))
        .filter(|r| in_range(&r.date))
        .collect();
    let failures: Vec<&JournalRow> = rows
        .iter()
        .filter(|r| r.state == JournalState::Failed)
        .take(JOURNAL_PAGE)
        .collect();
    let page_number = given(&q.page)
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let shown: Vec<&JournalRow> = matching
        .iter()
        .skip((page_number - 1) * JOURNAL_PAGE)
        .take(JOURNAL_PAGE)
        .copied()
        .collect();
    let states = [
        "planned",
        "sent",
        "failed",
        "skipped",
        "awaiting_approval",
        "approved",
    ];
    let channels = ["email", "letter", "sms", "call", "task"];
    let link = |page: usize| {
        let mut query = format!("page={page}");
        for (key, value) in [
            ("state", state),
            ("channel", channel),
            ("invoice", invoice),
            ("customer", customer),
            ("from", given(&q.from)),
            ("to", given(&q.to)),
        ] {
            if let Some(value) = value {
                let _ = write!(query, "&{key}={}", encode(value));
            }
        }
        format!("/journal?{query}")
    };
    let body = html! {
        h2 #failures-title { (w.t("Failed deliveries")) }
        @if failures.is_empty() {
            p.muted #no-failures { (w.t("No failed delivery.")) }
        } @else {
            div #failures { (history_table(&failures, w, true)) }
        }
        h2 { (w.t("History")) }
        form.filters method="get" action="/journal" {
            label { (w.t("State")) select name="state" {
                option value="" { (w.t("any")) }
                @for s in states { option value=(s) selected[state == Some(s)] { (s) } }
            } }
            label { (w.t("Channel")) select name="channel" {
                option value="" { (w.t("any")) }
                @for c in channels { option value=(c) selected[channel == Some(c)] { (c) } }
            } }
            label { (w.t("Invoice")) input name="invoice" value=(invoice.unwrap_or("")); }
            label { (w.t("Customer")) input name="customer" value=(customer.unwrap_or("")); }
            label { (w.t("From")) input type="date" name="from" value=(given(&q.from).unwrap_or("")); }
            label { (w.t("Until")) input type="date" name="to" value=(given(&q.to).unwrap_or("")); }
            button type="submit" { (w.t("Filter")) }
        }
        p.muted #journal-count { (matching.len()) }
        div #journal { (history_table(&shown, w, true)) }
        (pager(page_number, matching.len(), JOURNAL_PAGE, w, link))
    };
    page(caller, w.t("Journal"), body)
}

/// Links to the page before and after, when there are.
pub(crate) fn pager(
    page: usize,
    total: usize,
    size: usize,
    w: Lang,
    link: impl Fn(usize) -> String,
) -> Markup {
    let pages = total.div_ceil(size).max(1);
    html! {
        nav.pager {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← " (w.t("Previous")) } }
            span { (w.t("Page")) " " (page) " / " (pages) }
            @if page < pages { a rel="next" href=(link(page + 1)) { (w.t("Next")) " →" } }
        }
    }
}

/// `/rules`: each policy's stages as a ladder, the scripts and templates
/// loaded, the holds, the last reload and its problems.
pub(super) async fn rules(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
) -> Response {
    blocking(move || rules_page(&app, &caller)).await
}

fn rules_page(app: &Arc<App>, caller: &Caller) -> Response {
    let w = caller.lang;
    let status = app.shared.status();
    let project = &status.project;
    let rulebook = &project.rulebook;
    let mut templates: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, language) in rulebook.templates.all() {
        templates.entry(name).or_default().push(language);
    }
    let body = html! {
        (reload_facts(&status, w))
        @if !project.problems.0.is_empty() {
            h2 { (w.t("Warnings of the folder")) }
            (problems_list(&project.problems))
        }
        @if project.bad_rows > 0 {
            p.warning { (project.bad_rows) " " (w.t("bad feed rows skipped")) }
        }
        @for policy in &rulebook.policies {
            section.policy #{ "policy-" (policy.name) } data-policy=(policy.name) {
                h2 { (policy.name) }
                dl.facts {
                    @if !policy.description.is_empty() { dt { (w.t("Description")) } dd { (policy.description) } }
                    dt { (w.t("Priority")) } dd { (policy.priority) }
                    dt { (w.t("applies_to")) } dd {
                        @match &policy.applies_to { Some(e) => code { (e.source) }, None => (w.t("every invoice")) }
                    }
                    dt { (w.t("Anchor")) } dd { (anchor_name(policy)) }
                    dt { (w.t("File")) } dd { code { (policy.file.display()) } }
                }
                ol.ladder {
                    @for stage in &policy.stages {
                        li.stage data-stage=(stage.id) {
                            strong { (stage.id) } " — "
                            (trigger(stage, w)) ", " (stage.channel.as_str()) ", " (w.t("Template")) " " code { (stage.template) }
                            @if let Some(when) = &stage.when { ", " (w.t("when")) " " code { (when.source) } }
                            @if let Some(r) = &stage.repeat {
                                ", " (w.t("Repeat")) ": " (w.t("every")) " " (r.every) " " (w.t("days"))
                                @if let Some(max) = r.max { ", " (w.t("at most")) " " (max) " " (w.t("times")) }
                            }
                            @if stage.group == crate::rules::Grouping::Customer { ", " (w.t("grouped per customer")) }
                            @if stage.approve { ", " (w.t("approval")) }
                            @if stage.urgent { ", " (w.t("urgent")) }
                        }
                    }
                }
            }
        }
        h2 { (w.t("Scripts")) }
        @if rulebook.scripts.functions.is_empty() {
            p.muted { "—" }
        } @else {
            table #scripts {
                thead { tr { th { (w.t("Functions")) } th { (w.t("File")) } } }
                tbody { @for (name, arity, file) in &rulebook.scripts.functions {
                    tr { td { code { (name) "(" (arity) ")" } } td { code { (file.display()) } } }
                } }
            }
        }
        h2 { (w.t("Templates")) }
        table #templates {
            thead { tr { th { (w.t("Template")) } th { (w.t("Language")) } } }
            tbody { @for (name, languages) in &templates {
                tr { td { code { (name) } } td { (languages.join(", ")) } }
            } }
        }
        h2 { (w.t("Holds")) }
        @if rulebook.holds.list.is_empty() {
            p.muted { "—" }
        } @else {
            table #holds {
                thead { tr { th { (w.t("Hold")) } th { (w.t("Until")) } th { (w.t("Reason")) } th { (w.t("File")) } } }
                tbody { @for hold in &rulebook.holds.list {
                    tr {
                        td { @match &hold.target {
                            crate::rules::HoldTarget::Invoice(n) => { (w.t("Invoice")) " " a href=(invoice_href(n)) { (n) } },
                            crate::rules::HoldTarget::Customer(c) => { (w.t("Customer")) " " a href=(customer_href(c)) { (c) } },
                        } }
                        td { @if let Some(until) = hold.until { (until) } @else { "—" } }
                        td { (hold.reason) }
                        td { code { (hold.location.to_string()) } }
                    }
                } }
            }
        }
    };
    page(caller, w.t("Rules"), body)
}

fn anchor_name(policy: &crate::rules::Policy) -> &'static str {
    match policy.anchor {
        crate::rules::Anchor::DueDate => "due_date",
        crate::rules::Anchor::IssueDate => "issue_date",
    }
}

/// When a stage fires: its offset from the anchor, or its event.
fn trigger(stage: &crate::rules::Stage, w: Lang) -> String {
    match stage.trigger {
        crate::rules::Trigger::Offset => format!("{} {:+}", w.t("Offset"), stage.offset),
        crate::rules::Trigger::PromiseBroken => w.t("after a broken promise").to_string(),
        crate::rules::Trigger::Paid => w.t("thank-you when paid").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_encoded_whole_in_paths_and_queries() {
        assert_eq!(encode("F-001"), "F-001");
        assert_eq!(encode("A/B ?#&é"), "A%2FB%20%3F%23%26%C3%A9");
    }
}
