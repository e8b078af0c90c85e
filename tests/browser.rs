//! The web console in real headless Chromium driven over WebDriver (chromedriver): signing in, the plan, an invoice put on hold from its form and leaving the plan, a rendered HTML message whose customer's `<script>` never runs, and the README's screenshots.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (`.ci/run`
//! installs them); without them the test fails saying so, it never passes
//! silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};

/// The environment variable the sample's `http.token_env` names here.
const TOKEN_ENV: &str = "CONSOLE_TOKEN";
const TOKEN: &str = "a-long-random-console-token";

/// A customer name that is a script: shown everywhere as text, run nowhere.
const SCRIPTED: &str = "<script>window.__pwned=1</script> SARL";
/// The sample's customer renamed so.
const RENAMED: &str = "Menuiserie Martin SARL";

/// The day the console is served as of (the README tour's).
const TODAY: &str = "2026-12-01";

const INSTALL: &str = "the browser test needs Chromium and its WebDriver: \
                       install them with `apt-get install chromium chromium-driver`";

/// The first of `names` found on the `PATH`; none: the test fails saying
/// how to install what is missing.
fn installed(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{} is not on the PATH; {INSTALL}", names.join(" or ")))
}

/// chromedriver on a port of its choosing, once it answers `/status`.
fn chromedriver() -> (Spawned, String) {
    let mut command = Command::new(installed(&["chromedriver"]));
    command.arg("--port=0");
    let mut driver = Spawned::start_logging_to_stdout(command);
    let line = driver.expect_line(DEADLINE, "with chromedriver's port", |l| {
        l.contains("started successfully on port")
    });
    let port = line
        .trim_end_matches('.')
        .rsplit(' ')
        .next()
        .expect("a port");
    let url = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let ready = wait_until(DEADLINE, || {
        agent
            .get(format!("{url}/status"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            .is_some_and(|status| status["value"]["ready"] == true)
    });
    assert!(ready, "chromedriver at {url} never said it was ready");
    (driver, url)
}

/// The HTML part of the sample's message to a customer with several
/// invoices, and its greeting, made personal: the name is in the HTML.
const COMBINED: &str = "templates/combined.fr.html.hbs";
const GREETING: &str = "<p>Bonjour,</p>";

/// A copy of the sample whose customer [`RENAMED`] is named [`SCRIPTED`]
/// and greeted by name, with a token for the console.
fn sample() -> Folder {
    let folder = Folder::sample();
    for (file, from, to) in [
        ("data/invoices.csv", RENAMED, SCRIPTED),
        (COMBINED, GREETING, "<p>Bonjour {{customer.name}},</p>"),
    ] {
        let text = folder.read(file);
        assert!(text.contains(from), "{file} has no {from:?} any more");
        folder.write(file, &text.replace(from, to));
    }
    folder.write(
        "relance.yaml",
        &format!(
            "{}\nhttp: {{token_env: {TOKEN_ENV}}}\n",
            folder.read("relance.yaml")
        ),
    );
    folder
}

/// Where the README's screenshots are.
fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/img")
        .join(format!("console-{name}.png"))
}

/// The page as a PNG in docs/img: the window grown to the page's height
/// (up to a screen and a half), so that the picture shows the page rather
/// than its first screen.
async fn screenshot(client: &Client, name: &str) {
    let sizes = client
        .execute(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];",
            vec![],
        )
        .await
        .expect("the page's height");
    let pixels = |i: usize| sizes[i].as_u64().expect("a height in pixels");
    let page = u32::try_from(pixels(0))
        .unwrap_or(u32::MAX)
        .clamp(600, 1500);
    let window = u32::try_from(pixels(1)).unwrap_or(0);
    client
        .set_window_size(1280, page + window)
        .await
        .expect("resize the window");
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_path(name);
    std::fs::create_dir_all(path.parent().expect("docs/img")).expect("create docs/img");
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    client
        .set_window_size(1280, 900)
        .await
        .expect("resize the window");
}

/// Whether the page's script ran: `window.__pwned` is set.
async fn pwned(client: &Client) -> String {
    client
        .execute("return typeof window.__pwned;", vec![])
        .await
        .expect("run the test's own script")
        .as_str()
        .expect("a type name")
        .to_string()
}

/// Clicks `link` and waits for the page it leads to, known by `then`.
/// The page being left may hold `then` too (the plan's own filters): the
/// new page is first told apart by a mark the old one carries and a newly
/// loaded document does not.
async fn follow(
    client: &Client,
    link: Locator<'_>,
    then: Locator<'_>,
) -> fantoccini::elements::Element {
    client
        .execute("window.__left = true;", vec![])
        .await
        .expect("mark the page being left");
    client
        .find(link)
        .await
        .expect("the link")
        .click()
        .await
        .expect("click");
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = client
            .execute("return window.__left === true;", vec![])
            .await;
        // An error: the document is being replaced; ask again.
        if matches!(left, Ok(serde_json::Value::Bool(false))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new page within {DEADLINE:?} after the click"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
        .wait()
        .at_most(DEADLINE)
        .for_element(then)
        .await
        .expect("the next page")
}

/// The plan's row of the scripted customer: the invoice it is about.
async fn scripted_row(client: &Client) -> (fantoccini::elements::Element, String) {
    for row in client
        .find_all(Locator::Css("tr.reminder"))
        .await
        .expect("the plan's rows")
    {
        let customer = row
            .find(Locator::Css("a.customer"))
            .await
            .expect("a customer link")
            .text()
            .await
            .expect("its text");
        if customer == SCRIPTED {
            let invoice = row
                .attr("data-invoice")
                .await
                .expect("an attribute")
                .expect("data-invoice");
            return (row, invoice);
        }
    }
    panic!("no reminder of {SCRIPTED:?} on the plan's first page");
}

/// Filters the plan on `text` with its search field, as a person does.
async fn search_plan(client: &Client, text: &str) {
    follow(client, Locator::Id("nav-plan"), Locator::Id("plan-filters")).await;
    client
        .find(Locator::Css("#plan-filters input[name=q]"))
        .await
        .expect("the search field")
        .send_keys(text)
        .await
        .expect("type");
    follow(
        client,
        Locator::Css("#plan-filters button[type=submit]"),
        Locator::Id("plan-count"),
    )
    .await;
}

/// What a finance manager does, in the browser.
async fn scenario(client: Client, base: String) {
    // Not signed in: the console asks for the token, then opens the page asked for.
    client
        .goto(&format!("{base}/"))
        .await
        .expect("open the console");
    assert_eq!(client.current_url().await.expect("url").path(), "/login");
    client
        .find(Locator::Css("input[name=token]"))
        .await
        .expect("the token field")
        .send_keys(TOKEN)
        .await
        .expect("type the token");
    follow(
        &client,
        Locator::Css("form.login button[type=submit]"),
        Locator::Id("receivables"),
    )
    .await;
    // The sample speaks French; the README's pictures are in English.
    follow(
        &client,
        Locator::Css("header a.lang"),
        Locator::Id("receivables"),
    )
    .await;
    let title = client.find(Locator::Css("h1")).await.expect("a title");
    assert_eq!(title.text().await.expect("text"), "Overview");
    assert_eq!(pwned(&client).await, "undefined");
    screenshot(&client, "overview").await;

    // The plan: the scripted name is text, and nothing ran.
    follow(&client, Locator::Id("nav-plan"), Locator::Css("table#plan")).await;
    let (row, invoice) = scripted_row(&client).await;
    assert_eq!(pwned(&client).await, "undefined");
    screenshot(&client, "plan").await;

    // Its message as it will be sent: the HTML in a sandboxed frame.
    row.find(Locator::Css("a.message"))
        .await
        .expect("the message's link")
        .click()
        .await
        .expect("click");
    let frame = client
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css("iframe#html"))
        .await
        .expect("the message's HTML");
    assert_eq!(
        frame.attr("sandbox").await.expect("attr"),
        Some(String::new())
    );
    let customer = client
        .find(Locator::Css("#message dd a[href^='/customers/']"))
        .await
        .expect("the customer");
    assert_eq!(customer.text().await.expect("text"), SCRIPTED);
    assert_eq!(pwned(&client).await, "undefined");
    frame.enter_frame().await.expect("switch into the message");
    let shown = client
        .find(Locator::Css("body"))
        .await
        .expect("the message's body")
        .text()
        .await
        .expect("its text");
    assert_contains(&shown, SCRIPTED);
    assert_eq!(pwned(&client).await, "undefined", "in the message's frame");
    client.enter_parent_frame().await.expect("back to the page");
    assert_eq!(pwned(&client).await, "undefined");

    // The invoice: its story, then on hold from its form.
    follow(&client, Locator::Id("nav-plan"), Locator::Css("table#plan")).await;
    follow(
        &client,
        Locator::Css(&format!("tr.reminder[data-invoice='{invoice}'] a.invoice")),
        Locator::Id("hold-form"),
    )
    .await;
    assert_eq!(pwned(&client).await, "undefined");
    screenshot(&client, "invoice").await;
    search_plan(&client, &invoice).await;
    assert!(
        !client
            .find_all(Locator::Css("tr.reminder"))
            .await
            .expect("rows")
            .is_empty(),
        "{invoice} is in the plan before its hold"
    );
    follow(
        &client,
        Locator::Css(&format!("tr.reminder[data-invoice='{invoice}'] a.invoice")),
        Locator::Id("hold-form"),
    )
    .await;
    let form = client
        .form(Locator::Id("hold-form"))
        .await
        .expect("the hold form");
    form.set_by_name("until", "2026-12-31")
        .await
        .expect("the date");
    client
        .find(Locator::Css("#hold-form input[name=reason]"))
        .await
        .expect("the reason")
        .send_keys("Called: pays on Friday")
        .await
        .expect("type the reason");
    form.submit().await.expect("put on hold");
    let hold = client
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::XPath(
            "//dd[@id='hold'][contains(., 'held until 2026-12-31')]",
        ))
        .await
        .expect("the invoice's page saying it is held");
    assert_contains(&hold.text().await.expect("text"), "Called: pays on Friday");

    // Gone from the plan.
    search_plan(&client, &invoice).await;
    client
        .find(Locator::Id("plan-empty"))
        .await
        .unwrap_or_else(|_| panic!("{invoice} is still in the plan after its hold"));
    assert_eq!(pwned(&client).await, "undefined");
}

#[test]
fn a_finance_manager_signs_in_reads_the_plan_and_puts_an_invoice_on_hold() {
    let chromium = installed(&["chromium", "chromium-browser", "google-chrome"]);
    let (_driver, webdriver) = chromedriver();
    let folder = sample();
    let mut command = folder.command(&["serve", "--as-of", TODAY, "--http", "127.0.0.1:0"]);
    command.env(TOKEN_ENV, TOKEN);
    let mut served = Spawned::start(command);
    let base = served.expect_console();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        serde_json::json!({
            "binary": chromium,
            // --no-sandbox: Chromium's own sandbox cannot start as root (CI containers).
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900",
                     "--force-device-scale-factor=1", "--lang=en-US"],
        }),
    );
    let client = runtime
        .block_on(
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&webdriver),
        )
        .unwrap_or_else(|e| panic!("chromedriver could not start Chromium ({e}); {INSTALL}"));
    // The scenario runs as a task, so that a failed assertion still ends
    // the browser's session (no Chromium left behind) before failing the test.
    let outcome = runtime.block_on(runtime.spawn(scenario(client.clone(), base)));
    let _ = runtime.block_on(async move {
        tokio::time::timeout(Duration::from_secs(10), client.close()).await
    });
    if let Err(failure) = outcome {
        eprintln!("the console's log:\n{}", served.log.join("\n"));
        match failure.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(served.running(), "the console is still serving");
}
