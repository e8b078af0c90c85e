//! `relance report`: receivables aged, disputed, held and DSO per currency, per customer, the coming days' reminders and the customers to watch, computed by hand on a small folder and read from the real binary as JSON, a table and an HTML page.

mod common;

use common::*;

/// A folder whose every number of the report is computed by hand below.
///
/// As of 2026-12-01 (the 90 days of DSO: 2026-09-03 to 2026-12-01):
/// - EUR, open: A1 1000.00 not due (due 12-10); A2 500.00 with 100.00 paid,
///   15 days late; B1 250.50, 60 days late, issued 09-02 (before the 90
///   days); B2 300.00, 122 days late and held (invoice hold until 12-31).
///   Open 1950.50. C1 700.00 disputed; C2 void (not invoiced). Paid: D1–D3,
///   E1–E2, F1–F3, all issued in the 90 days. Invoiced in 90 days: A1 1000 +
///   A2 500 + C1 700 + D 300 + E 100 + F 30 = 2630.00; DSO 1950.50 × 90 ÷
///   2630 = 66.747… → 66.7.
/// - USD: U1 1200.00 30 days late (issued 10-02), U2 80.00 91 days late
///   (issued 08-01); customer CU's hold ended 11-30. Open 1280.00, invoiced
///   1200.00, DSO 96.0.
/// - Paid late: D paid 2 of 3 late (10 and 20 days: 10 on average), E 1 of
///   2 (5 days: 2.5 on average), F 1 of 3 (not at least half).
fn receivables_folder() -> Folder {
    let rows = vec![
        due("A1", "CA", "Alpha SARL", "2026-12-10", "1000.00").with("issue_date", "2026-11-10"),
        due("A2", "CA", "Alpha SARL", "2026-11-16", "500.00")
            .with("issue_date", "2026-10-17")
            .with("amount_paid", "100.00"),
        due("B1", "CB", HOSTILE_NAME, "2026-10-02", "250.50").with("issue_date", "2026-09-02"),
        due("B2", "CB", HOSTILE_NAME, "2026-08-01", "300.00").with("issue_date", "2026-07-01"),
        due("C1", "CC", "Charlie", "2026-09-15", "700.00").with("status", "disputed"),
        due("C2", "CC", "Charlie", "2026-11-01", "999.00").with("status", "void"),
        due("D1", "CD", "Delta", "2026-10-01", "100.00").settled("2026-10-11"),
        due("D2", "CD", "Delta", "2026-10-15", "100.00").settled("2026-10-15"),
        due("D3", "CD", "Delta", "2026-11-01", "100.00").settled("2026-11-21"),
        due("E1", "CE", "Echo", "2026-10-05", "50.00").settled("2026-10-10"),
        due("E2", "CE", "Echo", "2026-10-20", "50.00").settled("2026-10-18"),
        due("F1", "CF", "Foxtrot", "2026-10-01", "10.00").settled("2026-10-06"),
        due("F2", "CF", "Foxtrot", "2026-10-02", "10.00").settled("2026-10-02"),
        due("F3", "CF", "Foxtrot", "2026-10-03", "10.00").settled("2026-10-01"),
        due("U1", "CU", "Uniform Inc.", "2026-11-01", "1200.00")
            .with("issue_date", "2026-10-02")
            .with("currency", "USD"),
        due("U2", "CU", "Uniform Inc.", "2026-09-01", "80.00")
            .with("issue_date", "2026-08-01")
            .with("currency", "USD"),
    ];
    let folder = dunning_folder("", &rows);
    folder
        .write(
            "rules/dunning.yaml",
            &policy(
                "dunning",
                &[
                    "{id: overdue, offset: 1, template: overdue}",
                    "{id: final, offset: 45, template: overdue}",
                ],
            ),
        )
        .write(
            "rules/holds.yaml",
            "holds:\n  - invoice: B2\n    until: 2026-12-31\n    reason: contested\n  - customer: CU\n    until: 2026-11-30\n",
        );
    folder
}

/// A customer name a feed could hold, which a page must show as text.
const HOSTILE_NAME: &str = "<script>alert('x')</script> & Co";

/// An open EUR invoice due on `due` (issued that day) to customer `id`.
fn due(number: &str, id: &str, name: &str, due: &str, amount: &str) -> Inv {
    inv(number, due, amount)
        .customer(id, name)
        .with("currency", "EUR")
        .with("language", "en")
}

#[test]
fn the_json_is_what_the_numbers_are_by_hand() {
    let folder = receivables_folder();
    let report = folder
        .run(&["report", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0);
    let expected = serde_json::json!({
        "as_of": "2026-12-01",
        "currencies": {
            "EUR": {
                "open": "1950.50",
                "buckets": {"not_due": "1000.00", "1-30": "400.00", "31-60": "250.50", "61-90": "0.00", "over_90": "300.00"},
                "disputed": "700.00",
                "held": "300.00",
                "invoiced_90_days": "2630.00",
                "dso": "66.7"
            },
            "USD": {
                "open": "1280.00",
                "buckets": {"not_due": "0.00", "1-30": "1200.00", "31-60": "0.00", "61-90": "0.00", "over_90": "80.00"},
                "disputed": "0.00",
                "held": "0.00",
                "invoiced_90_days": "1200.00",
                "dso": "96.0"
            }
        },
        "customers": [
            {
                "customer_id": "CA", "customer_name": "Alpha SARL", "currency": "EUR", "open": "1400.00",
                "buckets": {"not_due": "1000.00", "1-30": "400.00", "31-60": "0.00", "61-90": "0.00", "over_90": "0.00"},
                "oldest_days_late": 15
            },
            {
                "customer_id": "CB", "customer_name": HOSTILE_NAME, "currency": "EUR", "open": "550.50",
                "buckets": {"not_due": "0.00", "1-30": "0.00", "31-60": "250.50", "61-90": "0.00", "over_90": "300.00"},
                "oldest_days_late": 122
            },
            {
                "customer_id": "CU", "customer_name": "Uniform Inc.", "currency": "USD", "open": "1280.00",
                "buckets": {"not_due": "0.00", "1-30": "1200.00", "31-60": "0.00", "61-90": "0.00", "over_90": "80.00"},
                "oldest_days_late": 91
            }
        ],
        // A2 and U1 have reached `overdue`, B1 and U2 `final` (the latest
        // reached fires, the earlier is skipped); B2 is held; A1 falls due
        // on 12-10, so its `overdue` is on 12-11.
        "upcoming": [
            {"date": "2026-12-01", "policy": "dunning", "stage": "overdue", "count": 2},
            {"date": "2026-12-01", "policy": "dunning", "stage": "final", "count": 2},
            {"date": "2026-12-11", "policy": "dunning", "stage": "overdue", "count": 1}
        ],
        "to_watch": [
            {"customer_id": "CD", "customer_name": "Delta", "settled": 3, "paid_late": 2, "average_days_late": "10"},
            {"customer_id": "CE", "customer_name": "Echo", "settled": 2, "paid_late": 1, "average_days_late": "2.5"}
        ]
    });
    assert_eq!(report.json(), expected, "{}", report.stdout);
}

#[test]
fn the_upcoming_reminders_are_those_preview_plans() {
    let folder = receivables_folder();
    let preview = folder
        .run(&["preview", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json();
    let planned: Vec<(String, String)> = preview
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["date"].to_string(), r["stage"].to_string()))
        .collect();
    let report = folder
        .run(&["report", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json();
    let mut counted: Vec<(String, String)> = Vec::new();
    for u in report["upcoming"].as_array().unwrap() {
        for _ in 0..u["count"].as_u64().unwrap() {
            counted.push((u["date"].to_string(), u["stage"].to_string()));
        }
    }
    let (mut planned, mut counted) = (planned, counted);
    planned.sort();
    counted.sort();
    assert_eq!(planned, counted);
}

#[test]
fn the_table_shows_the_same_numbers_for_people() {
    let folder = receivables_folder();
    let table = folder.run(&["report", "--as-of", AS_OF]).expect_code(0);
    let words = |prefix: &str| -> Vec<String> {
        let line = table
            .stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{}", table.stdout));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_starts_with(&table.stdout, "Receivables as of 2026-12-01\n");
    assert_eq!(
        words("CURRENCY"),
        [
            "CURRENCY", "OPEN", "NOT", "DUE", "1-30", "31-60", "61-90", "OVER", "90", "DISPUTED",
            "HELD", "INVOICED", "90", "DAYS", "DSO"
        ]
    );
    assert_eq!(
        words("EUR"),
        [
            "EUR", "1950.50", "1000.00", "400.00", "250.50", "0.00", "300.00", "700.00", "300.00",
            "2630.00", "66.7"
        ]
    );
    assert_eq!(
        words("USD"),
        [
            "USD", "1280.00", "0.00", "1200.00", "0.00", "0.00", "80.00", "0.00", "0.00",
            "1200.00", "96.0"
        ]
    );
    assert_eq!(
        words("CA "),
        [
            "CA", "Alpha", "SARL", "EUR", "1400.00", "1000.00", "400.00", "0.00", "0.00", "0.00",
            "15"
        ]
    );
    assert_eq!(
        words("2026-12-11"),
        ["2026-12-11", "dunning", "overdue", "1"]
    );
    assert_eq!(words("CD "), ["CD", "Delta", "3", "2", "10"]);
    assert_contains(&table.stdout, "\nReminders from 2026-12-01 to 2026-12-14\n");
    assert_contains(
        &table.stdout,
        "\nTo watch: paid at least half of their settled invoices late",
    );
}

#[test]
fn the_html_page_stands_alone_with_its_charts_and_escapes_the_feeds() {
    let folder = receivables_folder();
    let page = folder
        .run(&["report", "--as-of", AS_OF, "--format", "html"])
        .expect_code(0)
        .stdout;
    assert_starts_with(&page, "<!DOCTYPE html><html lang=\"en\">");
    // Self-contained: nothing fetched, no script.
    for outside in ["src=", "href=", "@import", "url(", "<script", "<link"] {
        assert!(!page.contains(outside), "{outside:?} in the page:\n{page}");
    }
    // The one address is the SVG namespace, which is no request.
    assert_eq!(
        page.matches("http").count(),
        page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    // The chart of the coming days and one aging chart per currency.
    assert_eq!(page.matches("<svg xmlns").count(), 3, "{page}");
    assert_contains(&page, "@media print");
    assert_contains(&page, "&lt;script&gt;alert('x')&lt;/script&gt; &amp; Co");
    // Amounts as the language writes them, and the legend's stages.
    assert_contains(&page, "€1,950.50");
    assert_contains(&page, "$1,280.00");
    assert_contains(&page, "Dec 11 · dunning · overdue: 1 reminder(s)");
    assert_contains(&page, "66.7");
}

#[test]
fn the_page_is_in_french_when_the_config_is() {
    let folder = receivables_folder();
    let config = folder
        .read("relance.yaml")
        .replace("language: en", "language: fr");
    folder.write("relance.yaml", &config).write(
        "templates/overdue.fr.hbs",
        &template("Facture {{invoice.number}}", "Bonjour,"),
    );
    let page = folder
        .run(&["report", "--as-of", AS_OF, "--format", "html"])
        .expect_code(0)
        .stdout;
    assert_starts_with(&page, "<!DOCTYPE html><html lang=\"fr\">");
    assert_contains(&page, "Encours clients");
    assert_contains(&page, "au 1er décembre 2026");
    assert_contains(&page, "1 950,50 €");
    assert_contains(&page, "66,7");
}

#[test]
fn a_folder_without_invoices_reports_nothing_rather_than_failing() {
    let folder = dunning_folder("", &[]);
    let report = folder
        .run(&["report", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(
        report,
        serde_json::json!({"as_of": "2026-12-01", "currencies": {}, "customers": [], "upcoming": [], "to_watch": []})
    );
    let table = folder.run(&["report", "--as-of", AS_OF]).expect_code(0);
    assert_eq!(
        table.stdout.matches("none\n").count(),
        4,
        "{}",
        table.stdout
    );
    let page = folder
        .run(&["report", "--as-of", AS_OF, "--format", "html"])
        .expect_code(0)
        .stdout;
    assert_contains(&page, "No reminder planned in these 14 days.");
}

#[test]
fn a_total_too_large_for_a_decimal_is_reported_as_such_never_as_a_wrong_number() {
    // Each amount fits a decimal (at most about 7.9e28); their sum does not.
    let rows = vec![
        due(
            "H1",
            "C1",
            "One",
            "2026-11-20",
            "50000000000000000000000000000",
        ),
        due(
            "H2",
            "C2",
            "Two",
            "2026-11-20",
            "50000000000000000000000000000",
        ),
        due(
            "H3",
            "C3",
            "Three",
            "2026-11-20",
            "79000000000000000000000000000",
        ),
    ];
    let folder = dunning_folder("", &rows);
    let saturated = "79228162514264337593543950335";
    let report = folder
        .run(&["report", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0);
    assert!(!report.stdout.contains(saturated), "{}", report.stdout);
    let json = report.json();
    let eur = &json["currencies"]["EUR"];
    assert_eq!(eur["open"], serde_json::Value::Null, "{eur}");
    assert_eq!(eur["buckets"]["1-30"], serde_json::Value::Null);
    assert_eq!(eur["buckets"]["not_due"], "0.00");
    assert_eq!(eur["dso"], serde_json::Value::Null);
    assert_eq!(
        eur["too_large"],
        serde_json::json!(["open", "invoiced_90_days", "1-30"])
    );
    // Each customer's own total is exact.
    let customers: Vec<&str> = json["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["open"].as_str().unwrap())
        .collect();
    // (29 digits leave no room for cents.)
    assert_eq!(
        customers,
        [
            "79000000000000000000000000000",
            "50000000000000000000000000000",
            "50000000000000000000000000000"
        ]
    );

    let table = folder.run(&["report", "--as-of", AS_OF]).expect_code(0);
    assert!(!table.stdout.contains(saturated), "{}", table.stdout);
    assert_contains(
        &table.stdout,
        "EUR: open, invoiced_90_days, 1-30 cannot be computed exactly: the sum passes what a decimal holds",
    );
    assert_contains(&table.stdout, "too large");
    let page = folder
        .run(&["report", "--as-of", AS_OF, "--format", "html"])
        .expect_code(0)
        .stdout;
    assert!(!page.contains(saturated));
    assert_contains(&page, "too large to compute");
}
