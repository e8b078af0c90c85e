//! `/plan`: the preview as a table with filters, a page at a time, each row opening its message exactly as it will be sent (`/plan/message`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use maud::html;
use serde::Deserialize;

use super::{bad_request, customer_href, encode, failed, given, invoice_href, layout, pager};
use crate::console::api::{date_param, days_param};
use crate::console::auth::Caller;
use crate::console::{App, State, blocking};
use crate::locale::format_money;
use crate::text::stage_label;

/// Rows of the plan a page shows.
const PLAN_PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub(crate) struct PlanQuery {
    as_of: Option<String>,
    days: Option<String>,
    from: Option<String>,
    to: Option<String>,
    policy: Option<String>,
    stage: Option<String>,
    channel: Option<String>,
    customer: Option<String>,
    q: Option<String>,
    page: Option<String>,
}

/// The window a plan page or a message shows: `as_of` (default the
/// daemon's today) for `days` days.
fn window(app: &App, as_of: Option<&str>, days: Option<&str>) -> Result<(NaiveDate, u32), String> {
    let from = date_param("as_of", as_of)?;
    let days = days_param(days)?;
    let status = app.shared.status();
    Ok((from.unwrap_or_else(|| status.today(Utc::now())), days))
}

pub(crate) async fn page(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
    Query(q): Query<PlanQuery>,
) -> Response {
    blocking(move || plan_page(&app, &caller, &q)).await
}

fn plan_page(app: &Arc<App>, caller: &Caller, q: &PlanQuery) -> Response {
    let w = caller.lang;
    let (as_of, days) = match window(app, q.as_of.as_deref(), q.days.as_deref()) {
        Ok(window) => window,
        Err(why) => return bad_request(caller, &why),
    };
    let (from, to) = match (
        date_param("from", q.from.as_deref()),
        date_param("to", q.to.as_deref()),
    ) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(why), _) | (_, Err(why)) => return bad_request(caller, &why),
    };
    let status = app.shared.status();
    let view = match app.cache.plan(&status.project, as_of, days) {
        Ok(view) => view,
        Err(e) => return failed(caller, &e),
    };
    let project = &view.project;
    let (policy, stage, channel, customer) = (
        given(&q.policy),
        given(&q.stage),
        given(&q.channel),
        given(&q.customer),
    );
    let text = given(&q.q).map(str::to_lowercase);
    let contains = |haystack: &str, needle: &str| haystack.to_lowercase().contains(needle);
    // Filtered on what the plan knows without rendering: a page renders
    // its own rows only.
    let matching: Vec<usize> = view
        .plan
        .reminders
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let inv = &project.ledger.invoices[r.invoice];
            let p = &project.rulebook.policies[r.policy];
            let s = &p.stages[r.stage];
            from.is_none_or(|f| r.date >= f)
                && to.is_none_or(|t| r.date <= t)
                && policy.is_none_or(|x| p.name == x)
                && stage.is_none_or(|x| s.id == x)
                && channel.is_none_or(|x| s.channel.as_str() == x)
                && customer.is_none_or(|x| {
                    *inv.bill_to.id == *x || contains(&inv.bill_to.name, &x.to_lowercase())
                })
                && text.as_deref().is_none_or(|x| {
                    contains(&inv.number, x)
                        || contains(&inv.bill_to.id, x)
                        || contains(&inv.bill_to.name, x)
                        || contains(&p.name, x)
                        || contains(&s.id, x)
                })
        })
        .map(|(i, _)| i)
        .collect();
    let page_number = given(&q.page)
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let shown: Vec<usize> = matching
        .iter()
        .skip((page_number - 1) * PLAN_PAGE)
        .take(PLAN_PAGE)
        .copied()
        .collect();
    let rows = project.render_rows(&view.plan.reminders, &view.messages, &shown, false);
    let window_query = format!("as_of={as_of}&days={days}");
    let link = |page: usize| {
        let mut query = format!("{window_query}&page={page}");
        for (key, value) in [
            ("from", given(&q.from)),
            ("to", given(&q.to)),
            ("policy", policy),
            ("stage", stage),
            ("channel", channel),
            ("customer", customer),
            ("q", given(&q.q)),
        ] {
            if let Some(value) = value {
                let _ = write!(query, "&{key}={}", encode(value));
            }
        }
        format!("/plan?{query}")
    };
    let mut stages: Vec<&str> = project
        .rulebook
        .policies
        .iter()
        .flat_map(|p| p.stages.iter().map(|s| s.id.as_str()))
        .collect();
    stages.sort_unstable();
    stages.dedup();
    let channels = ["email", "letter", "sms", "call", "task"];
    let body = html! {
        form.filters #plan-filters method="get" action="/plan" {
            label { (w.t("As of")) input type="date" name="as_of" value=(as_of); }
            label { (w.t("Days")) input type="number" name="days" min="1" max="3660" value=(days); }
            label { (w.t("From")) input type="date" name="from" value=(given(&q.from).unwrap_or("")); }
            label { (w.t("Until")) input type="date" name="to" value=(given(&q.to).unwrap_or("")); }
            label { (w.t("Policy")) select name="policy" {
                option value="" { (w.t("any")) }
                @for p in &project.rulebook.policies { option value=(p.name) selected[policy == Some(p.name.as_str())] { (p.name) } }
            } }
            label { (w.t("Stage")) select name="stage" {
                option value="" { (w.t("any")) }
                @for s in &stages { option value=(s) selected[stage == Some(*s)] { (s) } }
            } }
            label { (w.t("Channel")) select name="channel" {
                option value="" { (w.t("any")) }
                @for c in channels { option value=(c) selected[channel == Some(c)] { (c) } }
            } }
            label { (w.t("Customer")) input name="customer" value=(customer.unwrap_or("")); }
            label { (w.t("Search")) input type="search" name="q" value=(given(&q.q).unwrap_or("")); }
            button type="submit" { (w.t("Filter")) }
        }
        p.muted #plan-count {
            span.count { (matching.len()) } " " (w.t("reminders")) " (" (as_of) ", " (days) " " (w.t("days")) ")"
            @if !view.plan.unmatched.is_empty() { " — " (view.plan.unmatched.len()) " " (w.t("unmatched")) }
            @if !view.plan.errors.is_empty() { " — " span.problem { (view.plan.errors.len()) " " (w.t("script errors")) } }
        }
        @if rows.is_empty() {
            p #plan-empty { (w.t("No reminder matches.")) }
        } @else {
            table #plan {
                thead { tr {
                    th { (w.t("Date")) } th { (w.t("Invoice")) } th { (w.t("Customer")) } th { (w.t("Policy")) }
                    th { (w.t("Stage")) } th { (w.t("Channel")) } th.num { (w.t("Amount due")) } th { (w.t("Subject")) }
                } }
                tbody {
                    @for (row, &i) in rows.iter().zip(&shown) {
                        @let inv = &project.ledger.invoices[view.plan.reminders[i].invoice];
                        tr.reminder data-invoice=(row.invoice) data-date=(row.date) data-stage=(row.stage) {
                            td { (row.date) }
                            td { a.invoice href=(invoice_href(row.invoice)) { (row.invoice) } }
                            td { a.customer href=(customer_href(row.customer_id)) { (row.customer_name) } }
                            td { (row.policy) }
                            td { (stage_label(row.stage, row.occurrence)) }
                            td { (row.channel.as_str()) }
                            td.num { (format_money(inv.amount_due(), row.currency, w.code())) }
                            td {
                                a.message href=(message_href(row.invoice, row.date, as_of, days)) { (row.subject) }
                                @if let Some(error) = &row.error { " " span.problem title=(error) { "⚠ " (w.t("cannot be sent")) } }
                                @if row.approval.is_some() { " " span.warning { (w.t("needs approval")) } }
                            }
                        }
                    }
                }
            }
        }
        (pager(page_number, matching.len(), PLAN_PAGE, w, link))
    };
    layout(caller, w.t("Plan"), body).into_response()
}

/// The link to a reminder's message in the plan of `as_of` for `days`
/// days: an invoice has at most one reminder a day.
pub(crate) fn message_href(invoice: &str, date: NaiveDate, as_of: NaiveDate, days: u32) -> String {
    format!(
        "/plan/message?invoice={}&date={date}&as_of={as_of}&days={days}",
        encode(invoice)
    )
}

#[derive(Deserialize)]
pub(crate) struct MessageQuery {
    invoice: String,
    date: String,
    as_of: Option<String>,
    days: Option<String>,
}

/// `/plan/message`: a reminder's message as it will be sent, from the plan
/// it is in: recipients, subject, the text, and the HTML in a sandboxed frame.
pub(crate) async fn message(
    axum::extract::State(app): State,
    Extension(caller): Extension<Caller>,
    Query(q): Query<MessageQuery>,
) -> Response {
    blocking(move || message_page(&app, &caller, &q)).await
}

fn message_page(app: &Arc<App>, caller: &Caller, q: &MessageQuery) -> Response {
    let w = caller.lang;
    let (as_of, days) = match window(app, q.as_of.as_deref(), q.days.as_deref()) {
        Ok(window) => window,
        Err(why) => return bad_request(caller, &why),
    };
    let date = match date_param("date", Some(&q.date)) {
        Ok(Some(date)) => date,
        Ok(None) => return bad_request(caller, "date: expected YYYY-MM-DD"),
        Err(why) => return bad_request(caller, &why),
    };
    let status = app.shared.status();
    let view = match app.cache.plan(&status.project, as_of, days) {
        Ok(view) => view,
        Err(e) => return failed(caller, &e),
    };
    let project = &view.project;
    let found =
        view.plan.reminders.iter().position(|r| {
            r.date == date && *project.ledger.invoices[r.invoice].number == *q.invoice
        });
    let Some(i) = found else {
        let body = html! { p.problem { (w.t("The message is not in the plan (the plan changed since).")) } };
        return (
            StatusCode::NOT_FOUND,
            layout(caller, w.t("Not found"), body),
        )
            .into_response();
    };
    let rendered = project.render_rows(&view.plan.reminders, &view.messages, &[i], true);
    let Some(m) = rendered.first() else {
        return failed(
            caller,
            &crate::error::Error::UnknownInvoice(q.invoice.clone()),
        );
    };
    let body = html! {
        dl.facts #message data-invoice=(m.invoice) data-message=(m.message) {
            dt { (w.t("Invoice")) } dd { a href=(invoice_href(m.invoice)) { (m.invoice) } }
            dt { (w.t("Customer")) } dd { a href=(customer_href(m.customer_id)) { (m.customer_name) } }
            dt { (w.t("Date")) } dd { (m.date) @if let Some(at) = &m.send_at { " — " (w.t("Goes out")) " " (at) } }
            dt { (w.t("Policy")) } dd { (m.policy) " / " (stage_label(m.stage, m.occurrence)) }
            dt { (w.t("Channel")) } dd { (m.channel.as_str()) }
            dt { (w.t("To")) } dd #to { (m.to) }
            @if !m.cc.is_empty() { dt { (w.t("Copies")) } dd { (m.cc.join(", ")) } }
            @if !m.bcc.is_empty() { dt { (w.t("Blind copies")) } dd { (m.bcc.join(", ")) } }
            @if let Some(reply_to) = m.reply_to { dt { (w.t("Reply to")) } dd { (reply_to) } }
            dt { (w.t("Template")) } dd { code { (m.template) } " (" (m.language) ")" }
            @if m.covers.len() > 1 { dt { (w.t("Covers")) } dd { (m.covers.join(", ")) } }
            dt { (w.t("Subject")) } dd #subject { (m.subject) }
            @if let Some(error) = &m.error { dt { (w.t("Error")) } dd.problem { (error) } }
            @if m.approval.is_some() { dt { (w.t("approval")) } dd.warning { (w.t("needs approval")) } }
        }
        h2 { (w.t("Text")) }
        pre #body { (m.body.as_deref().unwrap_or("")) }
        @if let Some(html) = &m.html {
            h2 { (w.t("HTML (sandboxed: no script runs)")) }
            // `sandbox` with no allowance: no script, no form, no
            // navigation of the console, a unique origin. The HTML is an
            // attribute value here, escaped like any other.
            iframe #html sandbox="" referrerpolicy="no-referrer" srcdoc=(html) title=(m.subject) {}
        }
    };
    layout(caller, w.t("The message"), body).into_response()
}
