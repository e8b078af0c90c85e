//! Who may use the console: the token (`Authorization: Bearer`), the session cookie a browser gets at /login, and the anti-CSRF token every form that changes something carries.
//!
//! With a token configured, every route but `/login` (and, unless
//! `http.open_metrics: false`, `/metrics`, `/healthz` and `/readyz`) needs
//! either the token as a bearer or a session cookie. Without one (a
//! loopback address only) nothing is asked; a browser still gets a session,
//! whose anti-CSRF token keeps another site's page from posting the
//! console's forms. The JSON API's writes take JSON only, which a page of
//! another site cannot send without the console's consent (CORS), and a
//! bearer token is never sent by a browser on its own: neither needs the
//! anti-CSRF token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Form, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::text::Lang;
use super::{App, State, pages, secure};

/// The cookie that carries a browser's session id.
const SESSION_COOKIE: &str = "relance_session";
/// The cookie that keeps the language a reader picked.
const LANG_COOKIE: &str = "relance_lang";
/// How long a session lasts after its sign-in.
const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
/// The sessions kept at most: the oldest go first (a client that never
/// keeps its cookie must not fill the memory).
const MAX_SESSIONS: usize = 10_000;

/// A browser's session: its id (the cookie) and the anti-CSRF token its
/// forms carry.
#[derive(Clone)]
pub(crate) struct Session {
    id: String,
    pub csrf: String,
    started: Instant,
}

/// The sessions signed in, in memory: a restart signs everyone out.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get(id) {
            Some(s) if s.started.elapsed() < SESSION_LIFE => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    fn open(&self) -> Session {
        let session = Session {
            id: random_token(),
            csrf: random_token(),
            started: Instant::now(),
        };
        let mut sessions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .values()
                .min_by_key(|s| s.started)
                .map(|s| s.id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(session.id.clone(), session.clone());
        session
    }

    fn close(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// 32 bytes from the operating system's generator, in hex. Should the
/// generator fail, the sessions of this request are refused, never weak.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::error!("console: no random bytes for a session: {e}");
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is asking, as the guard found out, for the handlers.
#[derive(Clone)]
pub(crate) struct Caller {
    /// The browser's session, when it has one.
    pub session: Option<Session>,
    /// Authenticated by the bearer token (a script): no anti-CSRF token is asked.
    pub by_token: bool,
    pub lang: Lang,
    /// A token is configured: the pages offer to sign out.
    pub signed_in: bool,
}

impl Caller {
    /// The anti-CSRF token a form of this page carries (empty for a script).
    pub fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", |s| &s.csrf)
    }

    /// Whether `given`, from a form, is this session's anti-CSRF token; a
    /// caller with the bearer token needs none.
    pub fn may_post(&self, given: &str) -> bool {
        self.by_token
            || self
                .session
                .as_ref()
                .is_some_and(|s| !s.csrf.is_empty() && same(&s.csrf, given))
    }
}

/// The 403 of a form without its session's anti-CSRF token.
pub(crate) fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "403 Forbidden: this form does not carry the session's anti-CSRF token (reload the page and send it again)\n",
    )
        .into_response()
}

/// Compares in a time that does not depend on where they differ, so that
/// the time of an answer says nothing about the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `name=value` from a query string.
fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn session_cookie(session: &Session) -> HeaderValue {
    let value = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        session.id,
        SESSION_LIFE.as_secs()
    );
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
}

/// Whether a refused request is a browser's page, sent to sign in, rather
/// than a script's, answered 401.
fn is_page(request: &Request) -> bool {
    let path = request.uri().path();
    request.method() == Method::GET
        && !path.starts_with("/api/")
        && !matches!(path, "/metrics" | "/healthz" | "/readyz")
}

/// The routes open without the token: signing in, and the monitoring
/// ones unless `http.open_metrics: false`.
fn is_open(app: &App, path: &str) -> bool {
    path == "/login"
        || (app.settings.open_metrics && matches!(path, "/metrics" | "/healthz" | "/readyz"))
}

/// Every request passes here: who it is (token, session, or nobody asked),
/// the language of its page, and the headers of every response.
pub(super) async fn guard(
    axum::extract::State(app): State,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let picked = query_value(request.uri().query(), "lang").and_then(Lang::parse);
    let lang = picked
        .or_else(|| cookie(headers, LANG_COOKIE).and_then(Lang::parse))
        .unwrap_or_else(|| Lang::of(&app.shared.status().project.config.language));
    let mut session = cookie(headers, SESSION_COOKIE).and_then(|id| app.sessions.get(id));
    let mut opened = None;
    let token = app.settings.token.as_deref();
    let by_token = match (token, bearer(headers)) {
        (Some(token), Some(given)) if same(token, given) => true,
        (Some(_), Some(_)) => {
            tracing::warn!(
                peer = %peer,
                path = request.uri().path(),
                "console: refused a request with a wrong token"
            );
            return refused();
        }
        (None, given) => given.is_some(),
        (Some(_), None) => false,
    };
    let path = request.uri().path().to_string();
    if token.is_some() && !by_token && session.is_none() && !is_open(&app, &path) {
        if is_page(&request) {
            let back = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let mut response =
                Redirect::to(&format!("/login?next={}", pages::encode(back))).into_response();
            secure(&mut response);
            return response;
        }
        return refused();
    }
    // Without a token, a browser gets a session of its own for the
    // anti-CSRF token of its forms.
    if token.is_none() && session.is_none() && is_page(&request) {
        let new = app.sessions.open();
        opened = Some(session_cookie(&new));
        session = Some(new);
    }
    request.extensions_mut().insert(Caller {
        session,
        by_token,
        lang,
        signed_in: token.is_some(),
    });
    let mut response = next.run(request).await;
    if let Some(cookie) = opened {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if let Some(picked) = picked
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=31536000",
            picked.code()
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    secure(&mut response);
    response
}

/// The 401 of a wrong or missing token: it says nothing more.
fn refused() -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "401 Unauthorized\n").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    secure(&mut response);
    response
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// Where to go after signing in: a path of the console, never another site.
fn local(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    }
}

pub(super) async fn login_page(
    axum::Extension(caller): axum::Extension<Caller>,
    axum::extract::Query(query): axum::extract::Query<LoginQuery>,
) -> Response {
    login_form(&caller, &query.next, false)
}

fn login_form(caller: &Caller, next: &str, refused: bool) -> Response {
    let w = caller.lang;
    let body = html! {
        form.login method="post" action="/login" {
            p { (w.t("Enter the console's token (the value of the environment variable named by http.token_env).")) }
            @if refused { p.problem #refused { (w.t("Sign-in refused.")) } }
            input type="hidden" name="next" value=(local(next));
            label { (w.t("Token")) " " input type="password" name="token" autocomplete="current-password" autofocus; }
            " "
            button type="submit" { (w.t("Sign in")) }
        }
    };
    let page = pages::layout(caller, w.t("Sign in"), body);
    let status = if refused {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, page).into_response()
}

#[derive(Deserialize)]
pub(super) struct Login {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

/// Signs a browser in: the right token opens a session (an `HttpOnly`,
/// `SameSite=Strict` cookie); a wrong one is refused, logged, and told
/// nothing more.
pub(super) async fn login(
    axum::extract::State(app): State,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Extension(caller): axum::Extension<Caller>,
    Form(login): Form<Login>,
) -> Response {
    let next = local(&login.next);
    let Some(token) = app.settings.token.as_deref() else {
        return Redirect::to(next).into_response();
    };
    if !same(token, login.token.trim()) {
        tracing::warn!(peer = %peer, "console: refused a sign-in with a wrong token");
        return login_form(&caller, next, true);
    }
    let session = app.sessions.open();
    if session.id.is_empty() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "no session could be opened\n",
        )
            .into_response();
    }
    tracing::info!(peer = %peer, "console: signed in");
    let mut response = Redirect::to(next).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie(&session));
    response
}

#[derive(Deserialize)]
pub(super) struct Logout {
    #[serde(default)]
    csrf: String,
}

/// Signs a browser out: its session ends (a form that changes something,
/// so it carries the anti-CSRF token).
pub(super) async fn logout(
    axum::extract::State(app): State,
    axum::Extension(caller): axum::Extension<Caller>,
    Form(form): Form<Logout>,
) -> Response {
    if !caller.may_post(&form.csrf) {
        return forbidden();
    }
    if let Some(session) = &caller.session {
        app.sessions.close(&session.id);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("relance_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_next_stays_on_the_console() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert_eq!(local("/plan?x=1"), "/plan?x=1");
        assert_eq!(local("//evil.example"), "/");
        assert_eq!(local("https://evil.example"), "/");
        assert_eq!(random_token().len(), 64);
    }
}
