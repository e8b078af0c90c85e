//! Issue 12: what `check` knows will fail before a delivery does: template
//! names that leave `templates/`, addresses delivery would refuse, names too
//! long for a file, grouped messages without a common recipient, and Rhai
//! errors located in the `.rhai` file where they happen.

use crate::common::{Folder, assert_contains, template};
use crate::{check_problems, folder, inv, run_expect, with_stages};

/// A policy `p` whose one stage, on the due date, uses template `name`.
fn with_template_name(name: &str) -> Folder {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "rules/p.yaml",
        &format!("name: p\nstages:\n  - id: on_due\n    offset: 0\n    template: '{name}'\n"),
    );
    f
}

#[test]
fn a_template_name_that_leaves_the_templates_folder_is_an_error_at_its_key() {
    for (name, why) in [
        ("../../x", "a path is not a template name"),
        ("/etc/passwd", "a path is not a template name"),
        ("sub/t", "a path is not a template name"),
        (
            "partials/sig",
            "a partial is included by templates with {{> NAME}}",
        ),
        ("..", "a template name does not start with a dot"),
    ] {
        let f = with_template_name(name);
        // The file it names is there: only the name is wrong.
        f.write("templates/partials/sig.fr.hbs", "Signature");
        f.write("x.fr.hbs", &template("S", "B"));
        let problems = check_problems(&f);
        assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        assert!(
            problems[0].starts_with(&format!("rules/p.yaml:5:5: template {name:?}: {why}")),
            "{name}: {problems:?}"
        );
        assert_contains(&problems[0], "templates/NAME.LANG.hbs");
        // Nothing is previewed or sent under a policy that does not load.
        let preview = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 1);
        assert_eq!(preview.json(), serde_json::json!([]), "{name}");
        let run = run_expect(&f, "run --once --as-of 2026-12-10", 1);
        assert_contains(&run.stderr, "rules/p.yaml:5:5: template");
        assert!(f.files("outbox").is_empty(), "{name}");
    }
}

#[test]
fn a_thank_you_template_is_a_name_too() {
    let f = with_stages(&[inv("F1", "2026-12-10", "10")], &[crate::ON_DUE]);
    f.write(
        "rules/p.yaml",
        "name: p\non_paid: {template: ../t}\nstages:\n  - {id: on_due, offset: 0, template: t}\n",
    );
    let problems = check_problems(&f);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("rules/p.yaml:2:11: template \"../t\": a path"),
        "{problems:?}"
    );
}

/// Invoices due 2026-12-10 whose `email` columns are these.
fn with_emails(emails: &[&str]) -> Folder {
    let rows: Vec<crate::Inv> = emails
        .iter()
        .enumerate()
        .map(|(i, email)| inv(&format!("F{}", i + 1), "2026-12-10", "10").with("email", email))
        .collect();
    let f = folder(&rows);
    f.write(
        "relance.yaml",
        "company: {email: billing@atelier.example}\n",
    );
    f
}

#[test]
fn every_address_is_checked_with_the_parser_delivery_uses() {
    let f = with_emails(&[
        "not an address",
        "Boss <boss@b.example>",
        "\"a b\"@x.example",
        "a@x.example, b@y.example",
        "ok@x.example; not an address",
        "a@x.example;b@y.example",
    ]);
    assert_eq!(
        check_problems(&f),
        vec![
            "data/invoices.csv:2: email: invoice F1: \"not an address\": not an email address (no @); \
             its emails go to its other addresses, and fail when it has none",
            "data/invoices.csv:3: email: invoice F2: \"Boss <boss@b.example>\": a display name is not \
             accepted: write the address alone (the message carries the customer's name); its emails \
             go to its other addresses, and fail when it has none",
            "data/invoices.csv:4: email: invoice F3: \"\\\"a b\\\"@x.example\": a quoted local part \
             (\"…\"@) is not accepted; its emails go to its other addresses, and fail when it has none",
            "data/invoices.csv:6: email: invoice F5: \"not an address\": not an email address (no @); \
             its emails go to its other addresses, and fail when it has none",
        ]
    );
    let preview = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 0).json();
    let rows: Vec<(String, String, String)> = preview
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["invoice"].as_str().unwrap().to_string(),
                r["to"].as_str().unwrap().to_string(),
                crate::local(&f, r["error"].as_str().unwrap_or("")),
            )
        })
        .collect();
    let row = |invoice: &str, to: &str, error: &str| (invoice.into(), to.into(), error.into());
    assert_eq!(
        rows,
        vec![
            row(
                "F1",
                "",
                "data/invoices.csv:2: email: invoice F1 has no valid email address: \
                 \"not an address\": not an email address (no @)"
            ),
            row(
                "F2",
                "",
                "data/invoices.csv:3: email: invoice F2 has no valid email address: \
                 \"Boss <boss@b.example>\": a display name is not accepted: write the address \
                 alone (the message carries the customer's name)"
            ),
            row(
                "F3",
                "",
                "data/invoices.csv:4: email: invoice F3 has no valid email address: \
                 \"\\\"a b\\\"@x.example\": a quoted local part (\"…\"@) is not accepted"
            ),
            // A comma separates addresses, as a semicolon does.
            row("F4", "a@x.example, b@y.example", ""),
            // A wrong address is left out: the message goes to the right one only.
            row("F5", "ok@x.example", ""),
            row("F6", "a@x.example, b@y.example", ""),
        ]
    );
    // The daemon sends the good ones and fails the others, saying why.
    run_expect(&f, "run --once --as-of 2026-12-10", 1);
    let sent: Vec<String> = f
        .files("outbox")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        sent,
        [
            "2026-12-10.F4.p.on_due.0.eml",
            "2026-12-10.F5.p.on_due.0.eml",
            "2026-12-10.F6.p.on_due.0.eml"
        ]
    );
    let to = |file: &str| {
        let eml = f.read(&format!("outbox/2026-12-10.{file}.p.on_due.0.eml"));
        let line = eml.lines().find(|l| l.starts_with("To: ")).unwrap_or("");
        line.to_string()
    };
    assert_eq!(to("F5"), "To: \"Customer F5\" <ok@x.example>");
    assert_eq!(
        to("F4"),
        "To: \"Customer F4\" <a@x.example>, \"Customer F4\" <b@y.example>"
    );
    for row in f.journal() {
        let failed = ["F1", "F2", "F3"].contains(&row.invoice.as_str());
        assert_eq!(row.state, if failed { "failed" } else { "sent" }, "{row:?}");
        if failed {
            assert_contains(
                row.last_error.as_deref().unwrap_or(""),
                &format!("email: invoice {} has no valid email address", row.invoice),
            );
        }
    }
}

#[test]
fn the_sender_address_is_checked_with_the_same_parser() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "relance.yaml",
        "company: {email: '\"billing\"@atelier.example'}\n",
    );
    assert_eq!(
        check_problems(&f)[0],
        "relance.yaml:1:11: company.email \"\\\"billing\\\"@atelier.example\" is not an email \
         address: a quoted local part (\"…\"@) is not accepted"
    );
}

#[test]
fn identifiers_too_long_for_a_file_name_are_warned_of() {
    let long = "N".repeat(240);
    let fits = "M".repeat(200);
    let f = folder(&[
        inv(&long, "2026-12-10", "10").with("email", "a@x.example"),
        inv(&fits, "2026-12-10", "10").with("email", "a@x.example"),
    ]);
    let stage_id = "s".repeat(250);
    f.write(
        "rules/q.yaml",
        &format!(
            "name: q\napplies_to: 'false'\nstages:\n  - id: {stage_id}\n    offset: 0\n    template: t\n"
        ),
    );
    let run = run_expect(&f, "check", 0);
    let lines = crate::lines(&f, &run.stdout);
    assert_eq!(
        lines,
        [
            format!(
                "rules/q.yaml:4:5: warning: stage {stage_id}: with policy q, its file names are \
                 longer than the 255 bytes a file name may have: delivery shortens them (use \
                 shorter ids)"
            ),
            // The date, the number, `.p.on_due.0`, `.eml`, and the temporary file's `.` and `.tmp`.
            format!(
                "data/invoices.csv:2: warning: invoice {}… (240 bytes): its file names (stage \
                 on_due) would be 271 bytes long, more than the 255 a file name may have: delivery \
                 shortens them with a hash",
                "N".repeat(40)
            ),
        ],
    );
}

#[test]
fn a_grouped_message_goes_only_to_the_addresses_every_invoice_in_it_carries() {
    let row = |number: &str, customer: &str, email: &str| {
        inv(number, "2026-12-10", "10")
            .customer(customer, customer)
            .with("email", email)
    };
    let f = folder(&[
        row("F1", "C1", "a@one.example; shared@one.example"),
        row("F2", "C1", "shared@one.example, b@one.example"),
        row("F3", "C2", "x@two.example"),
        row("F4", "C2", "y@other.example"),
    ]);
    f.write(
        "rules/p.yaml",
        "name: p\nstages:\n  - {id: on_due, offset: 0, template: st, group: customer}\n",
    )
    .write(
        "templates/st.fr.hbs",
        &template("Relevé", "{{#each invoices}}{{number}}\n{{/each}}"),
    )
    .write(
        "relance.yaml",
        "company: {email: billing@atelier.example}\n",
    );
    let run = run_expect(&f, "check", 0);
    assert_eq!(
        crate::lines(&f, &run.stdout),
        [
            // The rows of one customer that disagree are warned of as such too.
            "data/invoices.csv:3: warning: customer \"C1\" has rows that disagree with its first row \
             at data/invoices.csv:2: email \"shared@one.example, b@one.example\" here, \
             \"a@one.example; shared@one.example\" there (one customer_id is one customer: are \
             these two companies?)",
            "data/invoices.csv:5: warning: customer \"C2\" has rows that disagree with its first row \
             at data/invoices.csv:4: email \"y@other.example\" here, \"x@two.example\" there (one \
             customer_id is one customer: are these two companies?)",
            "data/invoices.csv:5: warning: email: invoice F4 of customer C2 shares no address with \
          invoice F3 (data/invoices.csv:4) and the customer's invoices between: a message grouped \
          per customer about them would have no recipient (it goes only to the addresses every \
          invoice in it carries)"
        ]
    );
    let preview = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 0).json();
    let rows: Vec<String> = preview
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let error = crate::local(&f, r["error"].as_str().unwrap_or(""));
            format!(
                "{} to={} {error}",
                r["invoice"].as_str().unwrap(),
                r["to"].as_str().unwrap()
            )
        })
        .collect();
    let no_common = "data/invoices.csv:4: email: the invoices of this message (F3, F4) have no \
                     address in common: a message grouped per customer goes only to the addresses \
                     every invoice in it carries";
    assert_eq!(
        rows,
        [
            "F1 to=shared@one.example ".to_string(),
            "F2 to=shared@one.example ".to_string(),
            format!("F3 to= {no_common}"),
            format!("F4 to= {no_common}"),
        ]
    );
    // The daemon sends C1's statement to the shared address only, and
    // sends C2's nowhere.
    run_expect(&f, "run --once --as-of 2026-12-10", 1);
    let [eml] = f.files("outbox").try_into().expect("one message");
    let eml = std::fs::read_to_string(eml).unwrap();
    let to = eml.lines().find(|l| l.starts_with("To: ")).unwrap();
    assert_eq!(to, "To: C1 <shared@one.example>");
    for row in f.journal() {
        let c2 = ["F3", "F4"].contains(&row.invoice.as_str());
        assert_eq!(row.state, if c2 { "failed" } else { "sent" }, "{row:?}");
    }
}

const LIB: &str = "\
// Helpers of the finance team.
fn forever(invoice) {
    let n = 0;
    loop { n += 1; }
}
fn typed(invoice) {
    invoice.number - 1 > 0
}
fn outer(invoice) {
    forever(invoice)
}
";

/// Policy `p` whose stage on the due date holds when `when` does.
fn with_lib_and_when(when: &str) -> Folder {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write("rules/lib.rhai", LIB).write(
        "rules/p.yaml",
        &format!(
            "name: p\nstages:\n  - id: on_due\n    offset: 0\n    template: t\n    when: '{when}'\n"
        ),
    );
    f
}

#[test]
fn rhai_runtime_errors_inside_a_function_are_located_in_its_rhai_file() {
    for (when, at, message) in [
        (
            "forever(invoice)",
            "rules/lib.rhai:4:5: script stopped: too many operations",
            "(in forever, called at rules/p.yaml:6:12)",
        ),
        (
            "invoice.amount > 0 && outer(invoice)",
            "rules/lib.rhai:4:5: script stopped: too many operations",
            "(in outer → forever, called at rules/p.yaml:6:34)",
        ),
        ("typed(invoice)", "rules/lib.rhai:7:20: ", "(in typed)"),
    ] {
        let f = with_lib_and_when(when);
        let problems = check_problems(&f);
        assert_eq!(problems.len(), 1, "{when}: {problems:?}");
        assert!(problems[0].starts_with(at), "{when}: {problems:?}");
        assert_contains(&problems[0], message);
        // preview and run report it at the same place, for that invoice.
        let preview = run_expect(&f, "preview --as-of 2026-12-10 --days 1", 0);
        assert_contains(&crate::local(&f, &preview.stderr), at);
    }
}
