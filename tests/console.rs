//! The web console through a real server on a free port of 127.0.0.1 (`relance serve` and `relance run --http`), driven by a real HTTP client: the JSON API in the command line's shapes, the token, sessions and anti-CSRF tokens, /metrics as Prometheus text, /healthz and /readyz, escaping, reloads.

mod common;

use std::collections::BTreeMap;

use common::*;

/// The environment variable the console's token is read from by default.
const TOKEN_ENV: &str = "RELANCE_TOKEN";

/// A console running on a free port, and the process serving it.
struct Served {
    process: Spawned,
    base: String,
    agent: ureq::Agent,
}

/// What an HTTP request got back.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}:\n{}", self.status, self.body))
    }

    #[track_caller]
    fn expect(self, status: u16) -> Answer {
        assert_eq!(self.status, status, "body:\n{}", self.body);
        self
    }
}

fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = result.expect("an HTTP answer");
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// `relance --dir FOLDER ARGS… --http 127.0.0.1:0`, the token in the
/// environment when given (removed otherwise); waits for the address it logs.
fn serve_with(folder: &Folder, args: &[&str], token: Option<&str>) -> Served {
    let mut command = folder.command(args);
    command.args(["--http", "127.0.0.1:0"]);
    match token {
        Some(token) => command.env(TOKEN_ENV, token),
        None => command.env_remove(TOKEN_ENV),
    };
    let mut process = Spawned::start(command);
    let base = process.expect_console();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    Served {
        process,
        base,
        agent,
    }
}

/// `relance serve --as-of AS_OF` on the folder.
fn serve(folder: &Folder, token: Option<&str>) -> Served {
    serve_with(folder, &["serve", "--as-of", AS_OF], token)
}

impl Served {
    fn get(&self, path: &str) -> Answer {
        answer(self.agent.get(format!("{}{path}", self.base)).call())
    }

    fn get_with(&self, path: &str, header: (&str, &str)) -> Answer {
        answer(
            self.agent
                .get(format!("{}{path}", self.base))
                .header(header.0, header.1)
                .call(),
        )
    }

    fn bearer(&self, path: &str, token: &str) -> Answer {
        self.get_with(path, ("Authorization", &format!("Bearer {token}")))
    }

    /// A JSON body with the bearer token, and `If-Match` when given.
    fn send_json(&self, path: &str, token: &str, body: &str, if_match: Option<&str>) -> Answer {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json");
        if let Some(version) = if_match {
            request = request.header("If-Match", version);
        }
        answer(request.send(body))
    }

    fn delete(&self, path: &str, token: &str) -> Answer {
        answer(
            self.agent
                .delete(format!("{}{path}", self.base))
                .header("Authorization", &format!("Bearer {token}"))
                .call(),
        )
    }

    fn post_form(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Answer {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        answer(request.send_form(form.iter().copied()))
    }

    /// Signs in with `token`: the session cookie (`name=value`).
    fn sign_in(&self, token: &str) -> String {
        let signed = self
            .post_form("/login", None, &[("token", token), ("next", "/plan")])
            .expect(303);
        assert_eq!(signed.header("location"), Some("/plan"));
        let cookie = signed
            .headers_named("set-cookie")
            .into_iter()
            .find(|c| c.starts_with("relance_session="))
            .expect("a session cookie")
            .to_string();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert_contains(&cookie, attribute);
        }
        cookie.split(';').next().expect("name=value").to_string()
    }
}

/// The anti-CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with its anti-CSRF token")
        + "name=\"csrf\" value=\"".len();
    page[at..at + page[at..].find('"').expect("the end of the value")].to_string()
}

/// The value of the hidden field `name` of a page's first form that has one.
fn field_of(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&key)
        .unwrap_or_else(|| panic!("no field {name} in:\n{page}"))
        + key.len();
    page[at..at + page[at..].find('"').expect("the end of the value")].to_string()
}

/// The invoices of `/api/plan` on `date`.
fn planned_on(served: &Served, token: &str, date: &str) -> Vec<String> {
    served
        .bearer("/api/plan", token)
        .expect(200)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["date"] == date)
        .map(|r| r["invoice"].as_str().unwrap().to_string())
        .collect()
}

/// A folder of three English invoices overdue on [`AS_OF`], the first of a
/// customer whose name is a script, with an HTML part to its template.
fn folder() -> Folder {
    let mut rows = invoices(3);
    rows[0] = rows[0]
        .clone()
        .customer("C-EVIL", "<script>alert('pwned')</script> SARL");
    let folder = dunning_folder("", &rows);
    folder.write(
        "templates/overdue.en.html.hbs",
        "<p>Dear {{customer.name}},</p><p>please pay {{money invoice.amount_due}}.</p>\n",
    );
    folder
}

/// The samples of a Prometheus text exposition: `name{labels}` → value.
/// Every line must be a comment (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) or
/// a sample whose value is a number; anything else fails the test.
fn prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap_or("");
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kind),
                "not a Prometheus comment: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "not a metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels: {line}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

#[test]
fn the_api_answers_in_the_shapes_of_the_command_line() {
    let folder = folder();
    let served = serve(&folder, None);

    let plan = served
        .get(&format!("/api/plan?as_of={AS_OF}&days=14"))
        .expect(200);
    assert_eq!(plan.header("content-type"), Some("application/json"));
    let preview = folder
        .run(&[
            "preview", "--as-of", AS_OF, "--days", "14", "--format", "json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(plan.json(), preview);
    // The default window is the daemon's today (its --as-of) for 14 days.
    assert_eq!(served.get("/api/plan").expect(200).json(), preview);

    let explained = served
        .get(&format!("/api/invoices/F002?as_of={AS_OF}"))
        .expect(200)
        .json();
    let explain = folder
        .run(&["explain", "F002", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(explained, explain);
    let unknown = served.get("/api/invoices/NOPE").expect(404).json();
    assert_eq!(unknown["error"], "invoice NOPE is not in the feeds");

    // The journal is read when it changes: a pass of another process shows.
    assert_eq!(
        served.get("/api/history").expect(200).json(),
        serde_json::json!([])
    );
    folder.run(&RUN_ONCE).expect_code(0);
    let history = folder
        .run(&["history", "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(history.as_array().unwrap().len(), 3);
    assert_eq!(served.get("/api/history").expect(200).json(), history);
    let one = served.get("/api/history?invoice=F002").expect(200).json();
    assert_eq!(
        one,
        folder
            .run(&["history", "F002", "--format", "json"])
            .expect_code(0)
            .json()
    );
    let of_customer = served
        .get("/api/history?customer=C-EVIL&state=sent")
        .expect(200)
        .json();
    let rows = of_customer.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{of_customer}");
    assert_eq!(rows[0]["invoice"], "F001");
    assert_eq!(
        served.get("/api/history?state=skipped").expect(200).json(),
        serde_json::json!([])
    );

    let bad = served.get("/api/history?state=lost").expect(400).json();
    assert_contains(
        bad["error"].as_str().unwrap(),
        "state: \"lost\" is not a state",
    );
    let bad = served.get("/api/plan?as_of=tomorrow").expect(400).json();
    assert_contains(bad["error"].as_str().unwrap(), "expected YYYY-MM-DD");
    served.get("/api/plan?days=0").expect(400);
}

#[test]
fn a_token_guards_every_route_and_a_browser_signs_in_once() {
    let folder = folder();
    let mut served = serve(&folder, Some("s3cret-token"));

    // No token: a script is refused, a browser sent to sign in.
    let refused = served.get("/api/plan").expect(401);
    assert_eq!(refused.body, "401 Unauthorized\n");
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let page = served.get("/plan?days=3").expect(303);
    assert_eq!(
        page.header("location"),
        Some("/login?next=%2Fplan%3Fdays%3D3")
    );
    served.get("/api/history").expect(401);
    served.get("/journal").expect(303);

    // A wrong token: 401, the same few words, and a line in the log.
    let wrong = served.bearer("/api/plan", "s3cret-tokem").expect(401);
    assert_eq!(wrong.body, "401 Unauthorized\n");
    served
        .process
        .expect_line(DEADLINE, "about the wrong token", |l| {
            l.contains("WARN") && l.contains("console: refused a request with a wrong token")
        });

    // The right token opens every route.
    served.bearer("/api/plan", "s3cret-token").expect(200);
    served.bearer("/", "s3cret-token").expect(200);
    served.bearer("/invoices/F001", "s3cret-token").expect(200);

    // Monitoring is open by default.
    served.get("/metrics").expect(200);
    served.get("/healthz").expect(200);
    served.get("/readyz").expect(200);

    // A browser signs in once: a wrong token is refused without a hint.
    let login = served.get("/login?next=/plan").expect(200);
    assert_contains(&login.body, "type=\"password\" name=\"token\"");
    let refused = served
        .post_form("/login", None, &[("token", "guess"), ("next", "/")])
        .expect(401);
    assert!(refused.header("set-cookie").is_none());
    assert_contains(&refused.body, "Sign-in refused.");
    served
        .process
        .expect_line(DEADLINE, "about the refused sign-in", |l| {
            l.contains("console: refused a sign-in with a wrong token")
        });
    // A sign-in never sends the browser to another site.
    let elsewhere = served
        .post_form(
            "/login",
            None,
            &[("token", "s3cret-token"), ("next", "//evil.example/")],
        )
        .expect(303);
    assert_eq!(elsewhere.header("location"), Some("/"));

    let cookie = served.sign_in("s3cret-token");
    let overview = served.get_with("/", ("Cookie", &cookie)).expect(200);
    served
        .get_with("/api/plan", ("Cookie", &cookie))
        .expect(200);

    // Signing out changes something: without the session's anti-CSRF token, 403.
    served.post_form("/logout", Some(&cookie), &[]).expect(403);
    served
        .post_form("/logout", Some(&cookie), &[("csrf", "0000")])
        .expect(403);
    served.get_with("/", ("Cookie", &cookie)).expect(200);
    let csrf = csrf_of(&overview.body);
    served
        .post_form("/logout", Some(&cookie), &[("csrf", &csrf)])
        .expect(303);
    served.get_with("/", ("Cookie", &cookie)).expect(303);
}

#[test]
fn monitoring_needs_the_token_when_the_config_says_so() {
    let folder = folder();
    folder.write(
        "relance.yaml",
        &format!(
            "{}http: {{token_env: CONSOLE_TOKEN, open_metrics: false}}\n",
            folder.read("relance.yaml")
        ),
    );
    let mut command = folder.command(&["serve", "--as-of", AS_OF, "--http", "127.0.0.1:0"]);
    command.env("CONSOLE_TOKEN", "t0ken").env_remove(TOKEN_ENV);
    let mut process = Spawned::start(command);
    let base = process.expect_console();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let status = agent.get(format!("{base}{path}")).call().unwrap().status();
        assert_eq!(status.as_u16(), 401, "{path}");
        let status = agent
            .get(format!("{base}{path}"))
            .header("Authorization", "Bearer t0ken")
            .call()
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200, "{path}");
    }
}

#[test]
fn without_a_token_on_loopback_nothing_is_asked_but_forms_carry_their_token() {
    let folder = folder();
    let served = serve(&folder, None);
    served.get("/api/plan").expect(200);
    let overview = served.get("/").expect(200);
    let cookie = overview
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("relance_session="))
        .expect("a session for the forms' anti-CSRF token");
    assert_contains(cookie, "HttpOnly");
    assert_contains(cookie, "SameSite=Strict");
    // No sign-out to offer, and a form that changes something still
    // needs the session's token (another site's page cannot post it).
    assert!(!overview.body.contains("action=\"/logout\""));
    let cookie = cookie.split(';').next().unwrap();
    served.post_form("/logout", Some(cookie), &[]).expect(403);
    served
        .post_form("/logout", None, &[("csrf", "x")])
        .expect(403);
}

#[test]
fn a_console_beyond_this_machine_needs_a_token() {
    let folder = folder();
    let mut command = folder.command(&["serve", "--http", "0.0.0.0:0"]);
    command.env_remove(TOKEN_ENV);
    let run: Run = command.output().expect("run relance").into();
    let run = run.expect_code(2);
    assert_contains(
        &run.stderr,
        "refusing to serve the console on 0.0.0.0:0 without a token",
    );
    assert_contains(&run.stderr, "RELANCE_TOKEN");

    // The config's address too, for the daemon.
    folder.write(
        "relance.yaml",
        &format!(
            "{}http: {{listen: \"0.0.0.0:0\"}}\n",
            folder.read("relance.yaml")
        ),
    );
    let mut command = folder.command(&["run", "--as-of", AS_OF]);
    command.env_remove(TOKEN_ENV);
    let run: Run = command.output().expect("run relance").into();
    let run = run.expect_code(2);
    assert_contains(&run.stderr, "without a token");
    assert!(folder.files("outbox").is_empty(), "nothing is sent");

    // With a token it serves.
    {
        let mut command = folder.command(&["serve"]);
        command.env(TOKEN_ENV, "a-long-token");
        let mut process = Spawned::start(command);
        process.expect_line(DEADLINE, "with the address", |l| {
            l.contains("console listening on http://0.0.0.0:")
        });
    }

    // An address that is none is the config's mistake, located.
    folder.write(
        "relance.yaml",
        "language: en\nhttp:\n  listen: \"port 80\"\n",
    );
    let check = folder.run(&["check"]).expect_code(1);
    assert_contains(&check.stdout, "relance.yaml:3:");
    assert_contains(
        &check.stdout,
        "http: listen: \"port 80\" is not an address to listen on",
    );
}

#[test]
fn metrics_are_prometheus_text_with_the_daemons_passes_and_the_journal() {
    let folder = folder();
    let mut served = serve_with(&folder, &DAEMON, None);
    served.process.expect_evaluation();
    // Published just after the log line: wait for it.
    let mut samples = BTreeMap::new();
    assert!(wait_until(DEADLINE, || {
        let metrics = served.get("/metrics").expect(200);
        assert_eq!(
            metrics.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        samples = prometheus(&metrics.body);
        samples.get("relance_evaluation_duration_seconds_count{result=\"ok\"}") == Some(&1.0)
    }));
    let sample = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
    };
    assert_eq!(
        sample(
            r#"relance_reminders{state="sent",channel="email",policy="dunning",stage="overdue"}"#
        ),
        3.0
    );
    assert_eq!(
        sample(r#"relance_evaluation_duration_seconds_count{result="failed"}"#),
        0.0
    );
    assert_eq!(
        sample(r#"relance_reload_duration_seconds_count{result="ok"}"#),
        0.0
    );
    assert_eq!(sample("relance_delivery_failures_total"), 0.0);
    assert_eq!(sample(r#"relance_open_invoices{currency="EUR"}"#), 3.0);
    assert_eq!(sample(r#"relance_amount_due{currency="EUR"}"#), 300.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for series in [
        "relance_last_successful_evaluation_timestamp_seconds",
        "relance_last_successful_reload_timestamp_seconds",
    ] {
        assert!(
            (now - sample(series)).abs() < 600.0,
            "{series}: {}",
            sample(series)
        );
    }
    assert!(
        samples
            .contains_key(r#"relance_evaluation_duration_seconds_bucket{le="+Inf",result="ok"}"#)
            || samples.contains_key(
                r#"relance_evaluation_duration_seconds_bucket{result="ok",le="+Inf"}"#
            ),
        "{samples:#?}"
    );

    // The overview says what the pass did.
    let overview = served.get("/").expect(200);
    assert_contains(&overview.body, "3 due, 3 sent, 0 failed");
    served.get("/healthz").expect(200);
    assert_eq!(served.get("/readyz").expect(200).body, "ready\n");
}

#[test]
fn readyz_says_when_the_journal_cannot_be_written() {
    let folder = folder();
    // A file where the journal's folder should be.
    folder.write(
        "relance.yaml",
        &format!(
            "{}journal: data/invoices.csv/relance.db\n",
            folder.read("relance.yaml")
        ),
    );
    let served = serve(&folder, None);
    assert_eq!(served.get("/healthz").expect(200).body, "ok\n");
    let not_ready = served.get("/readyz").expect(503);
    assert_contains(&not_ready.body, "not ready: the journal ");
    assert_contains(&not_ready.body, "cannot be written");
}

#[test]
fn feed_values_are_escaped_and_messages_shown_in_a_sandbox() {
    let folder = folder();
    let served = serve(&folder, None);
    let escaped = "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; SARL";
    let alt_escaped = "&lt;script&gt;alert('pwned')&lt;/script&gt; SARL";
    for path in ["/plan", "/customers/C-EVIL", "/invoices/F001", "/"] {
        let page = served.get(path).expect(200);
        assert!(!page.body.contains("<script"), "{path}:\n{}", page.body);
        if path != "/" {
            assert!(
                page.body.contains(escaped) || page.body.contains(alt_escaped),
                "{path}:\n{}",
                page.body
            );
        }
    }
    let plan = served.get("/plan").expect(200);
    assert_eq!(plan.body.matches("<tr class=\"reminder\"").count(), 3);
    let at = plan
        .body
        .find("href=\"/plan/message?invoice=F001")
        .expect("a link to the message")
        + "href=\"".len();
    let link = plan.body[at..at + plan.body[at..].find('"').unwrap()].replace("&amp;", "&");
    let message = served.get(&link).expect(200);
    assert!(!message.body.contains("<script"), "{}", message.body);
    assert_contains(&message.body, "Invoice F001 is overdue");
    assert_contains(&message.body, "<iframe id=\"html\" sandbox=\"\"");
    assert!(!message.body.contains("allow-scripts"));
    // The HTML message (where Handlebars escaped the name once) is escaped
    // again as the frame's srcdoc attribute.
    assert_contains(
        &message.body,
        "srcdoc=\"&lt;p&gt;Dear &amp;lt;script&amp;gt;",
    );
    let csp = message.header("content-security-policy").unwrap();
    assert_contains(csp, "default-src 'none'");
    assert!(
        !csp.contains("script-src"),
        "no script runs anywhere: {csp}"
    );
    assert_eq!(message.header("x-frame-options"), Some("DENY"));
}

#[test]
fn pages_follow_the_configs_language_and_switch() {
    let folder = folder();
    let served = serve(&folder, None);
    let english = served.get("/").expect(200);
    assert_contains(&english.body, "<html lang=\"en\">");
    assert_contains(&english.body, "<h1>Overview</h1>");
    assert_contains(&english.body, "<div id=\"receivables\">");
    assert_contains(&english.body, "<svg");
    let french = served.get("/?lang=fr").expect(200);
    assert_contains(&french.body, "<html lang=\"fr\">");
    assert_contains(&french.body, "<h1>Vue d'ensemble</h1>");
    let kept = french
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("relance_lang=fr"))
        .expect("the language is kept")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let next = served.get_with("/rules", ("Cookie", &kept)).expect(200);
    assert_contains(&next.body, "<h1>Règles</h1>");
    for path in ["/journal", "/rules", "/customers/C-F002", "/invoices/F002"] {
        served.get(path).expect(200);
    }
    served.get("/invoices/NOPE").expect(404);
    served.get("/customers/NOPE").expect(404);
    served.get("/nowhere").expect(404);
}

#[test]
fn the_plan_page_filters_and_pages() {
    let folder = dunning_folder("", &invoices(60));
    let served = serve(&folder, None);
    let rows = |page: &Answer| page.body.matches("<tr class=\"reminder\"").count();
    let first = served.get("/plan").expect(200);
    assert_eq!(rows(&first), 50);
    assert_contains(&first.body, "rel=\"next\"");
    assert_eq!(rows(&served.get("/plan?page=2").expect(200)), 10);
    assert_eq!(
        rows(&served.get("/plan?customer=Customer+7").expect(200)),
        1
    );
    assert_eq!(rows(&served.get("/plan?q=f05").expect(200)), 10);
    assert_eq!(rows(&served.get("/plan?channel=letter").expect(200)), 0);
    assert_eq!(
        rows(
            &served
                .get("/plan?stage=overdue&policy=dunning&from=2026-12-01&to=2026-12-01")
                .expect(200)
        ),
        50
    );
    assert_eq!(rows(&served.get("/plan?from=2026-12-02").expect(200)), 0);
    served.get("/plan?from=yesterday").expect(400);
}

#[test]
fn an_edit_swaps_the_snapshot_and_a_broken_one_shows_its_problems() {
    let folder = folder();
    let mut served = serve(&folder, None);
    let invoices_planned = |served: &Served| -> Vec<String> {
        served
            .get("/api/plan")
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["invoice"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(invoices_planned(&served), ["F001", "F002", "F003"]);

    // A hold written by hand: the daemon's watcher reloads it, the plan follows.
    folder.write(
        "rules/holds.yaml",
        "holds:\n  - invoice: F002\n    reason: disputed delivery\n",
    );
    served
        .process
        .expect_line(DEADLINE, "for the reload", |l| l.contains("reload ok"));
    assert!(wait_until(DEADLINE, || invoices_planned(&served) == ["F001", "F003"]));
    assert_contains(
        &served.get("/invoices/F002").expect(200).body,
        "disputed delivery",
    );

    // A broken edit: the last good rules keep serving, the problems show.
    folder.write("rules/dunning.yaml", "name: dunning\nstages: [oops\n");
    served
        .process
        .expect_line(DEADLINE, "for the failed reload", |l| {
            l.contains("reload failed")
        });
    assert!(wait_until(DEADLINE, || served
        .get("/")
        .body
        .contains("Problems of the last edit")));
    let overview = served.get("/").expect(200);
    assert_contains(&overview.body, "dunning.yaml:");
    assert_eq!(invoices_planned(&served), ["F001", "F003"]);
    assert_contains(
        &served.get("/rules").expect(200).body,
        "Problems of the last edit",
    );
    let samples = prometheus(&served.get("/metrics").expect(200).body);
    assert_eq!(
        samples[r#"relance_reload_duration_seconds_count{result="failed"}"#],
        1.0
    );

    // Fixed: the problems are gone.
    folder.write(
        "rules/dunning.yaml",
        &policy("dunning", &["{id: overdue, offset: 1, template: overdue}"]),
    );
    served
        .process
        .expect_line(DEADLINE, "for the reload", |l| l.contains("reload ok"));
    assert!(wait_until(DEADLINE, || !served
        .get("/")
        .body
        .contains("Problems of the last edit")));
}

#[test]
fn holds_and_promises_posted_to_the_api_are_in_the_next_plan() {
    let folder = folder();
    let served = serve(&folder, Some("tok"));
    let empty = served.bearer("/api/holds", "tok").expect(200).json();
    assert_eq!(empty["holds"], serde_json::json!([]));
    assert_eq!(empty["promises"], serde_json::json!([]));
    let version = empty["version"].as_str().expect("a version").to_string();
    assert_eq!(planned_on(&served, "tok", AS_OF), ["F001", "F002", "F003"]);

    let created = served
        .send_json(
            "/api/holds",
            "tok",
            r#"{"invoice": "F002", "until": "2026-12-31", "reason": "called: pays on Friday"}"#,
            Some(&version),
        )
        .expect(201);
    let id = created.json()["id"]
        .as_str()
        .expect("the new id")
        .to_string();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/holds/{id}").as_str())
    );
    // Written to the file, reloaded before the answer: the next plan has it.
    assert_contains(&folder.read("rules/holds.yaml"), "called: pays on Friday");
    assert_eq!(planned_on(&served, "tok", AS_OF), ["F001", "F003"]);
    let listed = served.bearer("/api/holds", "tok").expect(200).json();
    assert_eq!(listed["holds"][0]["id"], id.as_str());
    assert_eq!(listed["holds"][0]["invoice"], "F002");
    assert_eq!(listed["holds"][0]["until"], "2026-12-31");

    // The file changed since `version`: refused, nothing written.
    let before = folder.read("rules/holds.yaml");
    let stale = served
        .send_json(
            "/api/holds",
            "tok",
            r#"{"customer": "C-F003", "reason": "late"}"#,
            Some(&version),
        )
        .expect(409);
    assert_contains(
        stale.json()["error"].as_str().unwrap(),
        "changed since it was read",
    );
    assert_eq!(folder.read("rules/holds.yaml"), before);
    // What makes no sense is a 400 saying why; a form's content type a 415.
    served
        .send_json("/api/holds", "tok", r#"{"reason": "nobody"}"#, None)
        .expect(400);
    let unknown = served
        .send_json(
            "/api/holds",
            "tok",
            r#"{"invoice": "F1", "reason": "x", "color": "red"}"#,
            None,
        )
        .expect(400);
    assert_contains(
        unknown.json()["error"].as_str().unwrap(),
        "unknown field `color`",
    );
    let form = answer(
        served
            .agent
            .post(format!("{}/api/holds", served.base))
            .header("Authorization", "Bearer tok")
            .send_form([("invoice", "F003"), ("reason", "x")]),
    );
    assert_eq!(form.status, 415, "{}", form.body);
    // Without the token, nothing.
    let anonymous = answer(
        served
            .agent
            .post(format!("{}/api/holds", served.base))
            .header("Content-Type", "application/json")
            .send(r#"{"invoice": "F003", "reason": "x"}"#),
    );
    assert_eq!(anonymous.status, 401);

    // A promise to pay pauses the invoice's reminders until its date.
    served
        .send_json(
            "/api/promises",
            "tok",
            r#"{"invoice": "F003", "date": "2026-12-20", "note": "by transfer"}"#,
            None,
        )
        .expect(201);
    assert_contains(&folder.read("rules/holds.yaml"), "promises:");
    assert_eq!(planned_on(&served, "tok", AS_OF), ["F001"]);
    let listed = served.bearer("/api/holds", "tok").expect(200).json();
    assert_eq!(listed["promises"][0]["invoice"], "F003");
    assert_eq!(listed["promises"][0]["date"], "2026-12-20");

    served
        .delete(&format!("/api/holds/{id}"), "tok")
        .expect(204);
    assert_eq!(planned_on(&served, "tok", AS_OF), ["F001", "F002"]);
    served
        .delete(&format!("/api/holds/{id}"), "tok")
        .expect(404);
}

#[test]
fn the_report_route_is_relance_report() {
    let folder = folder();
    let served = serve(&folder, None);
    let report = served
        .get(&format!("/api/report?as_of={AS_OF}"))
        .expect(200)
        .json();
    let cli = folder
        .run(&["report", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(report, cli);
    assert_eq!(served.get("/api/report").expect(200).json(), cli);
    served.get("/api/report?as_of=soon").expect(400);
}

#[test]
fn the_invoice_page_puts_on_hold_records_a_promise_and_lifts_the_hold() {
    let folder = folder();
    let served = serve(&folder, Some("tok"));
    let cookie = served.sign_in("tok");
    let page = served
        .get_with("/invoices/F002", ("Cookie", &cookie))
        .expect(200);
    let (csrf, version) = (csrf_of(&page.body), field_of(&page.body, "version"));
    assert_contains(&page.body, "id=\"hold-form\"");

    // Without the session's anti-CSRF token: 403, nothing written.
    let form = [
        ("version", version.as_str()),
        ("until", "2026-12-31"),
        ("reason", "phone call"),
    ];
    served
        .post_form("/invoices/F002/hold", Some(&cookie), &form)
        .expect(403);
    let forged = [
        ("csrf", "forged"),
        ("until", "2026-12-31"),
        ("reason", "phone call"),
    ];
    served
        .post_form("/invoices/F002/hold", Some(&cookie), &forged)
        .expect(403);
    let holds = folder.path().join("rules/holds.yaml");
    assert!(!holds.exists() || !folder.read("rules/holds.yaml").contains("phone call"));

    let with_csrf = [
        ("csrf", csrf.as_str()),
        ("version", version.as_str()),
        ("until", "2026-12-31"),
        ("reason", "phone call"),
    ];
    let held = served
        .post_form("/invoices/F002/hold", Some(&cookie), &with_csrf)
        .expect(303);
    assert_eq!(held.header("location"), Some("/invoices/F002"));
    assert_eq!(planned_on(&served, "tok", AS_OF), ["F001", "F003"]);
    let page = served
        .get_with("/invoices/F002", ("Cookie", &cookie))
        .expect(200);
    assert_contains(&page.body, "held until 2026-12-31: phone call");
    // The same form again, filled from the old version: the file changed.
    let stale = served
        .post_form("/invoices/F002/hold", Some(&cookie), &with_csrf)
        .expect(409);
    assert_contains(&stale.body, "changed since it was read");

    let (version, hold) = (field_of(&page.body, "version"), field_of(&page.body, "id"));
    let unhold = [
        ("csrf", csrf.as_str()),
        ("version", version.as_str()),
        ("id", hold.as_str()),
    ];
    served
        .post_form("/invoices/F002/unhold", Some(&cookie), &unhold)
        .expect(303);
    assert_eq!(planned_on(&served, "tok", AS_OF), ["F001", "F002", "F003"]);

    let page = served
        .get_with("/invoices/F003", ("Cookie", &cookie))
        .expect(200);
    let version = field_of(&page.body, "version");
    let promise = [
        ("csrf", csrf.as_str()),
        ("version", version.as_str()),
        ("date", "2026-12-20"),
        ("note", "by transfer"),
    ];
    served
        .post_form("/invoices/F003/promise", Some(&cookie), &promise)
        .expect(303);
    assert_eq!(planned_on(&served, "tok", AS_OF), ["F001", "F002"]);
    let page = served
        .get_with("/invoices/F003", ("Cookie", &cookie))
        .expect(200);
    assert_contains(&page.body, "2026-12-20");
    let bad = [("csrf", csrf.as_str()), ("date", "someday")];
    served
        .post_form("/invoices/F003/promise", Some(&cookie), &bad)
        .expect(400);
}
