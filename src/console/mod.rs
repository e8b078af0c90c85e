//! The web console (`relance serve`, `relance run --http`): the plan, each invoice's story, the journal and the rules as pages, a JSON API and /metrics, read from the daemon's own snapshot.
//!
//! It runs on a tokio runtime of its own, on its own threads beside the
//! daemon's loop, and reads what the daemon publishes ([`Shared`]): the
//! project it decides with, its last reload and evaluation. Nothing is
//! loaded per request: the feeds never, the journal when it changed. The
//! work of a request (planning, rendering) runs on the runtime's blocking
//! threads, so a slow page never holds up `/healthz`.

mod actions;
mod api;
mod auth;
mod metrics;
mod pages;
mod text;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::config::{Config, Http};
use crate::daemon::{Daemon, RunOptions, Shared};
use crate::error::{Error, Result};
use crate::project::Options;

/// How the console is served: where, and with which token.
#[derive(Clone)]
pub struct ConsoleSettings {
    pub listen: SocketAddr,
    /// What `Authorization: Bearer` and the login page expect; `None`: no
    /// authentication (a loopback address only).
    token: Option<String>,
    /// `/metrics`, `/healthz` and `/readyz` answer without the token.
    open_metrics: bool,
}

impl ConsoleSettings {
    /// The console the config (`http:`) and the command line (`--http
    /// ADDR`, which wins) ask for; `None` when neither does and the
    /// command does not serve one anyway (`relance run` without `http:`).
    /// The token is read from the environment variable `http.token_env`
    /// names. Refuses a non-loopback address without a token.
    pub fn of(
        config: &Config,
        listen: Option<SocketAddr>,
        always: bool,
    ) -> Result<Option<ConsoleSettings>> {
        if config.http.is_none() && listen.is_none() && !always {
            return Ok(None);
        }
        let http = config.http.clone().unwrap_or_default();
        let listen = match listen {
            Some(listen) => listen,
            None => Http::address(&http.listen)
                .map_err(|why| Error::Console(format!("http: listen: {why}")))?,
        };
        let token = std::env::var(&http.token_env)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if token.is_none() && !listen.ip().is_loopback() {
            return Err(Error::Unprotected(format!(
                "refusing to serve the console on {listen} without a token: anyone who can reach \
                 it could read every invoice and put reminders on hold. Set the environment \
                 variable {} to a long random token (http.token_env names another), or listen \
                 on 127.0.0.1",
                http.token_env
            )));
        }
        Ok(Some(ConsoleSettings {
            listen,
            token,
            open_metrics: http.open_metrics,
        }))
    }
}

/// A console serving: the address it listens on (its port, when asked for port 0).
pub struct Console {
    pub address: SocketAddr,
}

/// What every request reads: the daemon's snapshot, the sessions, the
/// metrics and what is cached between requests.
pub(crate) struct App {
    shared: Arc<Shared>,
    settings: ConsoleSettings,
    sessions: auth::Sessions,
    metrics: metrics::Metrics,
    cache: view::Cache,
}

type State = axum::extract::State<Arc<App>>;

/// `relance run` without `--once`, and `relance serve` (`run.serve_only`):
/// the daemon started with its signal handlers, the console beside it when
/// the config or `listen` asks for one (always for `serve`), served until a
/// signal stops it.
pub fn serve(options: Options, run: RunOptions, listen: Option<SocketAddr>) -> Result<()> {
    let always = run.serve_only;
    let daemon = Daemon::start(options, run)?;
    if let Some(settings) = ConsoleSettings::of(&daemon.project().config, listen, always)? {
        Console::start(daemon.shared(), settings)?;
    }
    daemon.serve()
}

impl Console {
    /// Starts the console on a runtime thread of its own: listens (an address
    /// in use fails here, before the daemon's loop starts), logs the address,
    /// and serves until the process exits.
    pub fn start(shared: Arc<Shared>, settings: ConsoleSettings) -> Result<Console> {
        let listen = settings.listen;
        let failed =
            |what: &str, e: std::io::Error| Error::Console(format!("{what} {listen}: {e}"));
        let listener = std::net::TcpListener::bind(settings.listen)
            .map_err(|e| failed("cannot listen on", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| failed("cannot listen on", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| failed("cannot listen on", e))?;
        // Two workers answer requests; planning and rendering run on the
        // blocking pool, so the daemon's loop keeps its core.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("relance-console")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| failed("cannot start the runtime for", e))?;
        let metrics = metrics::Metrics::default();
        metrics.follow(&shared);
        let authenticated = settings.token.is_some();
        let app = Arc::new(App {
            shared,
            settings,
            sessions: auth::Sessions::default(),
            metrics,
            cache: view::Cache::default(),
        });
        let router = router(app);
        std::thread::Builder::new()
            .name("relance-console".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            axum::serve(
                                listener,
                                router.into_make_service_with_connect_info::<SocketAddr>(),
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = served {
                        tracing::error!("console: {e}");
                    }
                });
            })
            .map_err(|e| failed("cannot start the thread for", e))?;
        tracing::info!(
            address = %address,
            token = authenticated,
            "console listening on http://{address}/"
        );
        Ok(Console { address })
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/plan", get(pages::plan::page))
        .route("/plan/message", get(pages::plan::message))
        .route("/invoices/{number}", get(pages::invoice::page))
        .route("/invoices/{number}/hold", post(pages::invoice::hold))
        .route("/invoices/{number}/promise", post(pages::invoice::promise))
        .route("/invoices/{number}/unhold", post(pages::invoice::unhold))
        .route("/customers/{id}", get(pages::customer))
        .route("/journal", get(pages::journal))
        .route("/rules", get(pages::rules))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/api/plan", get(api::plan))
        .route("/api/invoices/{number}", get(api::invoice))
        .route("/api/history", get(api::history))
        .route("/api/holds", get(api::holds).post(api::add_hold_route))
        .route("/api/holds/{id}", delete(api::remove_hold_route))
        .route("/api/promises", post(api::add_promise_route))
        .route("/api/report", get(api::report))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::guard,
        ))
        .with_state(app)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Runs `work` (planning, rendering, reading the journal) on the blocking
/// threads, so that the runtime's workers keep answering.
async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!("console: a request failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// An error of the library as an HTTP status: an unknown invoice or hold
/// is not found, a hold that makes no sense a bad request, a file that
/// changed under a form a conflict, anything else the server's fault.
fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::UnknownInvoice(_) | Error::HoldNotFound { .. } => StatusCode::NOT_FOUND,
        Error::InvalidHold { .. } => StatusCode::BAD_REQUEST,
        // The file changed since the form was filled: nothing was written.
        Error::HoldsChanged { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The headers every response carries: no script runs in a page (there
/// is none), nothing loads from elsewhere, no other site frames it. The
/// sandboxed message frames inherit the policy: a template's script is
/// stopped twice.
fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
}
