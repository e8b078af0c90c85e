//! The console's JSON API under `/api/`, in the shapes of the command line's `--format json`: the plan, an invoice's explanation, the journal.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Json, Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;

use super::auth::Caller;
use super::{App, State, actions, blocking, status_of};
use crate::error::Error;
use crate::report::explain::explain;
use crate::rules::{NewHold, NewPromise, add_hold, add_promise, read_holds_file, remove_hold};

/// A body of JSON as the command line prints it (`report::json`).
pub(super) fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let mut body = Vec::new();
    match crate::report::json(&mut body, value) {
        Ok(()) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `{"error": "…"}` with its status.
pub(super) fn failure(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn error(e: &Error) -> Response {
    failure(status_of(e), &e.to_string())
}

/// A query's date (`YYYY-MM-DD`): empty means none; anything else is a 400
/// saying what was expected.
pub(super) fn date_param(name: &str, value: Option<&str>) -> Result<Option<NaiveDate>, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}: {v:?} is not a date (expected YYYY-MM-DD)")),
    }
}

#[derive(Deserialize)]
pub(super) struct PlanQuery {
    as_of: Option<String>,
    days: Option<String>,
}

/// The number of days of a window: 1 to 3660, like `preview --days`.
pub(super) fn days_param(value: Option<&str>) -> Result<u32, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(crate::impact::HORIZON_DAYS),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=3660).contains(d))
            .ok_or_else(|| format!("days: {v:?} is not a number of days from 1 to 3660")),
    }
}

/// `GET /api/plan?as_of=&days=`: the rows `preview --format json` prints.
pub(super) async fn plan(axum::extract::State(app): State, Query(q): Query<PlanQuery>) -> Response {
    blocking(move || {
        let status = app.shared.status();
        let (from, days) = match (
            date_param("as_of", q.as_of.as_deref()),
            days_param(q.days.as_deref()),
        ) {
            (Ok(from), Ok(days)) => (
                from.unwrap_or_else(|| status.today(chrono::Utc::now())),
                days,
            ),
            (Err(why), _) | (_, Err(why)) => return failure(StatusCode::BAD_REQUEST, &why),
        };
        match app.cache.plan(&status.project, from, days) {
            Ok(view) => {
                let all: Vec<usize> = (0..view.plan.reminders.len()).collect();
                let rows =
                    view.project
                        .render_rows(&view.plan.reminders, &view.messages, &all, false);
                json(StatusCode::OK, &rows)
            }
            Err(e) => error(&e),
        }
    })
    .await
}

/// `?as_of=`: the day an answer is for (default: the snapshot's today).
#[derive(Deserialize)]
pub(super) struct AsOfQuery {
    as_of: Option<String>,
}

/// `GET /api/invoices/{number}?as_of=`: what `explain --format json` prints.
pub(super) async fn invoice(
    axum::extract::State(app): State,
    Path(number): Path<String>,
    Query(q): Query<AsOfQuery>,
) -> Response {
    blocking(move || {
        let status = app.shared.status();
        let date = match date_param("as_of", q.as_of.as_deref()) {
            Ok(date) => date.unwrap_or_else(|| status.today(chrono::Utc::now())),
            Err(why) => return failure(StatusCode::BAD_REQUEST, &why),
        };
        let journal = match app.cache.journal(&status.project) {
            Ok(journal) => journal,
            Err(e) => return error(&e),
        };
        match explain(&status.project, &number, date, &journal) {
            Ok(explanation) => json(StatusCode::OK, &explanation),
            Err(e) => error(&e),
        }
    })
    .await
}

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    invoice: Option<String>,
    customer: Option<String>,
    state: Option<String>,
}

/// `GET /api/history?invoice=&customer=&state=`: the rows `history --format
/// json` prints, newest first, each with its customer.
pub(super) async fn history(
    axum::extract::State(app): State,
    Extension(_caller): Extension<Caller>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    blocking(move || history_of(&app, &q)).await
}

fn history_of(app: &Arc<App>, q: &HistoryQuery) -> Response {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let (invoice, customer, state) = (given(&q.invoice), given(&q.customer), given(&q.state));
    if let Some(state) = &state
        && crate::journal::State::parse(state).is_none()
    {
        return failure(
            StatusCode::BAD_REQUEST,
            &format!(
                "state: {state:?} is not a state (expected planned, sent, failed, skipped, awaiting_approval or approved)"
            ),
        );
    }
    let status = app.shared.status();
    match app.cache.history(&status.project) {
        Ok(rows) => {
            let rows: Vec<&crate::journal::JournalRow> = rows
                .iter()
                .filter(|r| invoice.as_ref().is_none_or(|i| r.identity.invoice == *i))
                .filter(|r| customer.is_none() || r.customer_id == customer)
                .filter(|r| state.as_ref().is_none_or(|s| r.state.as_str() == s))
                .collect();
            json(StatusCode::OK, &rows)
        }
        Err(e) => error(&e),
    }
}

/// `GET /api/holds`: `rules/holds.yaml` as read now: its holds with their
/// ids, its promises, and the `version` a write may name in `If-Match`.
pub(super) async fn holds(axum::extract::State(app): State) -> Response {
    blocking(move || match read_holds_file(&actions::rules_dir(&app)) {
        Ok(file) => json(StatusCode::OK, &file),
        Err(e) => error(&e),
    })
    .await
}

/// The version a write expects the file to be at: `If-Match`, quoted or not.
fn if_match(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::IF_MATCH)?.to_str().ok()?.trim();
    Some(value.trim_matches('"').to_string()).filter(|v| !v.is_empty() && v != "*")
}

/// A JSON body that does not parse: 400 saying why (its own words: an
/// unknown key, a date that is none); another content type: 415, so that
/// another site's page, which may only post forms, writes nothing.
fn unreadable(rejection: &JsonRejection) -> Response {
    let status = match rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    failure(status, &rejection.body_text())
}

/// `POST /api/holds` (`{invoice|customer, until, reason}`): 201 with the new
/// hold's `id`, once the daemon has reloaded it.
pub(super) async fn add_hold_route(
    axum::extract::State(app): State,
    headers: HeaderMap,
    body: Result<Json<NewHold>, JsonRejection>,
) -> Response {
    let hold = match body {
        Ok(Json(hold)) => hold,
        Err(rejection) => return unreadable(&rejection),
    };
    let expected = if_match(&headers);
    blocking(move || {
        let what = format!(
            "hold on {} until {}: {}",
            hold.invoice
                .as_deref()
                .map(|i| format!("invoice {i}"))
                .or_else(|| hold.customer.as_deref().map(|c| format!("customer {c}")))
                .unwrap_or_default(),
            hold.until
                .map_or("it is removed".to_string(), |d| d.to_string()),
            hold.reason
        );
        match actions::write(&app, &what, |rules| {
            add_hold(rules, &hold, expected.as_deref())
        }) {
            Ok(id) => {
                let mut response = json(StatusCode::CREATED, &serde_json::json!({ "id": id }));
                if let Ok(location) = header::HeaderValue::from_str(&format!(
                    "/api/holds/{}",
                    super::pages::encode(&id)
                )) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                response
            }
            Err(e) => error(&e),
        }
    })
    .await
}

/// `DELETE /api/holds/{id}`: 204 once removed and reloaded.
pub(super) async fn remove_hold_route(
    axum::extract::State(app): State,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let expected = if_match(&headers);
    blocking(move || {
        let what = format!("hold {id} removed");
        match actions::write(&app, &what, |rules| {
            remove_hold(rules, &id, expected.as_deref())
        }) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => error(&e),
        }
    })
    .await
}

/// `POST /api/promises` (`{invoice, date, note}`): 201 once recorded and reloaded.
pub(super) async fn add_promise_route(
    axum::extract::State(app): State,
    headers: HeaderMap,
    body: Result<Json<NewPromise>, JsonRejection>,
) -> Response {
    let promise = match body {
        Ok(Json(promise)) => promise,
        Err(rejection) => return unreadable(&rejection),
    };
    let expected = if_match(&headers);
    blocking(move || {
        let what = format!("promise to pay invoice {} by {}", promise.invoice, promise.date);
        match actions::write(&app, &what, |rules| add_promise(rules, &promise, expected.as_deref())) {
            Ok(()) => json(
                StatusCode::CREATED,
                &serde_json::json!({ "invoice": promise.invoice, "date": promise.date, "note": promise.note }),
            ),
            Err(e) => error(&e),
        }
    })
    .await
}

/// `GET /api/report?as_of=`: what `relance report --format json` prints.
pub(super) async fn report(
    axum::extract::State(app): State,
    Query(q): Query<AsOfQuery>,
) -> Response {
    blocking(move || {
        let status = app.shared.status();
        let date = match date_param("as_of", q.as_of.as_deref()) {
            Ok(date) => date.unwrap_or_else(|| status.today(chrono::Utc::now())),
            Err(why) => return failure(StatusCode::BAD_REQUEST, &why),
        };
        match app.cache.receivables(&status.project, date) {
            Ok(receivables) => json(StatusCode::OK, &*receivables),
            Err(e) => error(&e),
        }
    })
    .await
}
