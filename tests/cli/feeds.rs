//! docs/contract.md §2: CSV, JSON and JSON Lines feeds, dialects, bad rows, open invoices.

use crate::common::{
    CSV_HEADER, Folder, Inv, Run, assert_contains, assert_starts_with, csv_delimited, policy,
};
use crate::{
    args, array, check_problems, csv, fields, fired, folder, inv, lines, preview_fields,
    preview_json, run_expect, run_inside, stderr_lines, str_of, with_stages,
};

/// The invoice number and amount due of each reminder on 2026-12-10.
fn due_on_dec_10(f: &Folder) -> Vec<(String, String)> {
    preview_json(f, "--as-of 2026-12-10 --days 1")
        .iter()
        .map(|r| (str_of(r, "invoice").into(), str_of(r, "amount_due").into()))
        .collect()
}

/// A folder whose only feed is `path` (JSON, or JSON Lines for `.jsonl` and
/// `.ndjson`), holding `content`.
fn json_feed(path: &str, content: &str) -> Folder {
    feed_with(path, "", content)
}

/// A folder whose only feed is `path`, holding `content`, with these
/// `settings` (YAML flow entries after its path: `, decimal: ","`).
fn feed_with(path: &str, settings: &str, content: &str) -> Folder {
    let f = folder(&[]);
    f.write(
        "relance.yaml",
        &format!("feeds: [{{path: {path}{settings}}}]\n"),
    )
    .write(path, content);
    f
}

/// Asserts that `check` finds no problem and that the reminders on
/// 2026-12-10 are for these invoices, with these amounts due.
#[track_caller]
fn assert_clean_and_due_on_dec_10(f: &Folder, expected: &[(&str, &str)]) {
    assert_eq!(run_expect(f, "check", 0).stdout, "");
    assert_due_on_dec_10(f, expected);
}

/// Asserts that the reminders on 2026-12-10 are for these invoices, with
/// these amounts due.
#[track_caller]
fn assert_due_on_dec_10(f: &Folder, expected: &[(&str, &str)]) {
    assert_eq!(due_on_dec_10(f), pairs(expected));
}

/// The pairs as owned strings, to compare with [`due_on_dec_10`].
fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_comma_separated_csv_is_read() {
    let f = folder(&[
        inv("F1", "2026-12-10", "1234.56").with("amount_paid", "34.56"),
        inv("F2", "2026-12-10", "99.9"),
    ]);
    assert_due_on_dec_10(&f, &[("F1", "1200.00"), ("F2", "99.90")]);
}

#[test]
fn a_semicolon_separated_csv_is_detected_without_configuration() {
    let f = folder(&[]);
    let rows = csv_delimited(
        &[
            inv("F1", "2026-12-10", "1234.56"),
            inv("F2", "2026-12-10", "5"),
        ],
        b';',
    );
    f.write("data/invoices.csv", &rows);
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 1", 0);
    assert_eq!(run.stderr, "");
    assert_due_on_dec_10(&f, &[("F1", "1234.56"), ("F2", "5.00")]);
}

#[test]
fn a_utf8_byte_order_mark_before_the_header_is_ignored() {
    let f = folder(&[]);
    // Were the BOM kept, the first column would be "\u{feff}number", not `number`.
    let rows = csv_delimited(&[inv("F1", "2026-12-10", "10")], b';');
    f.write("data/invoices.csv", &format!("\u{feff}{rows}"));
    assert_clean_and_due_on_dec_10(&f, &[("F1", "10.00")]);
}

#[test]
fn the_french_export_dialect_decimal_comma_date_format_and_column_mapping() {
    let f = folder(&[]);
    f.write(
        "relance.yaml",
        r#"feeds:
  - path: data/export_fr.csv
    decimal: ","
    date_format: "%d/%m/%Y"
    columns: {number: "N° facture", customer_id: "Code client", customer_name: "Raison sociale",
              email: "Courriel", issue_date: "Date facture", due_date: "Échéance",
              amount: "Montant TTC", amount_paid: "Déjà réglé"}
"#,
    )
    .write(
        "data/export_fr.csv",
        "N° facture;Code client;Raison sociale;Courriel;Date facture;Échéance;Montant TTC;Déjà réglé\n\
         FR-1;C1;Dupont SARL;d@x.fr;01/11/2026;10/12/2026;1 234,56;\n\
         FR-2;C2;Martin;m@x.fr;01/11/2026;10/12/2026;12 000,00;1 500,5\n\
         FR-3;C3;Leroy;l@x.fr;01/11/2026;2026-12-10;10,00;\n",
    );
    assert_eq!(
        stderr_lines(&f, "preview --as-of 2026-12-10 --days 1", 0),
        vec![
            "data/export_fr.csv:4: due_date: expected a date in the format %d/%m/%Y, found \"2026-12-10\"",
            "warning: 1 bad feed row(s) skipped; the other rows were processed",
        ]
    );
    assert_due_on_dec_10(&f, &[("FR-1", "1234.56"), ("FR-2", "10499.50")]);
    let r = &preview_json(&f, "--as-of 2026-12-10 --days 1")[0];
    assert_eq!(str_of(r, "customer_name"), "Dupont SARL");
    assert_eq!(str_of(r, "to"), "d@x.fr");
}

#[test]
fn a_json_array_keeps_amounts_exact() {
    let f = json_feed(
        "data/invoices.json",
        r#"[
  {"number": "J1", "customer_id": "C1", "customer_name": "Acme", "email": "a@x.fr",
   "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": 1234.56},
  {"number": "J2", "customer_id": "C1", "customer_name": "Acme", "email": "a@x.fr",
   "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": 0.3, "amount_paid": 0.1},
  {"number": "J3", "customer_id": "C1", "customer_name": "Acme", "email": "a@x.fr",
   "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": 12345678901234567.89},
  {"number": "J4", "customer_id": "C1", "customer_name": "Acme", "email": "a@x.fr",
   "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": "100.10", "amount_paid": 0.2}
]"#,
    );
    // As floats: 0.19999999999999998 and 12345678901234568.
    assert_due_on_dec_10(
        &f,
        &[
            ("J1", "1234.56"),
            ("J2", "0.20"),
            ("J3", "12345678901234567.89"),
            ("J4", "99.90"),
        ],
    );
}

#[test]
fn a_bad_json_element_is_reported_by_its_index() {
    let f = json_feed(
        "data/invoices.json",
        r#"[{"number": "J1", "customer_id": "C1", "customer_name": "Acme", "email": "a@x.fr",
                 "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": 10},
                {"number": "J2", "customer_id": "C1", "customer_name": "Acme",
                 "issue_date": "2026-11-10", "due_date": "2026-12-10"}]"#,
    );
    assert_eq!(
        stderr_lines(&f, "preview --as-of 2026-12-10 --days 1", 0),
        vec![
            "data/invoices.json:[1]: amount: missing (required)",
            "warning: 1 bad feed row(s) skipped; the other rows were processed",
        ]
    );
    assert_due_on_dec_10(&f, &[("J1", "10.00")]);
}

const JSON_LINES: &str = r#"{"number": "L1", "customer_id": "C1", "customer_name": "Acme", "email": "a@x.fr", "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": "10.5"}
{"number": "L2", "customer_id": "C2", "customer_name": "Beta", "email": "b@x.fr", "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": 20, "tags": ["vip", "public-sector"]}
"#;

#[test]
fn json_lines_feeds_are_read_from_jsonl_and_ndjson_files() {
    for name in ["data/invoices.jsonl", "data/invoices.ndjson"] {
        let f = json_feed(name, JSON_LINES);
        assert_eq!(
            due_on_dec_10(&f),
            pairs(&[("L1", "10.50"), ("L2", "20.00")]),
            "{name}"
        );
    }
}

#[test]
fn a_bad_json_line_is_reported_with_its_line_and_the_others_are_read() {
    let f = json_feed(
        "data/invoices.jsonl",
        &format!("{JSON_LINES}{{\"number\": \"L3\", \"amount\": }}\n"),
    );
    let stderr = stderr_lines(&f, "preview --as-of 2026-12-10 --days 1", 0);
    assert_starts_with(&stderr[0], "data/invoices.jsonl:3:");
    assert_eq!(
        stderr[1],
        "warning: 1 bad feed row(s) skipped; the other rows were processed"
    );
    assert_due_on_dec_10(&f, &[("L1", "10.50"), ("L2", "20.00")]);
}

#[test]
fn other_columns_are_kept_in_invoice_extra_for_scripts_and_templates() {
    let f = folder(&[]);
    f.write(
        "data/invoices.csv",
        &format!(
            "{CSV_HEADER},region,po\n\
             F1,C1,Acme,a@x.fr,2026-11-10,2026-12-10,10,,,,,,,,north,PO-77\n\
             F2,C2,Beta,b@x.fr,2026-11-10,2026-12-10,10,,,,,,,,south,PO-78\n"
        ),
    )
    .write(
        "rules/p.yaml",
        &policy(
            "p",
            &["{id: on_due, offset: 0, template: t, when: 'invoice.extra.region == \"north\"'}"],
        ),
    )
    .write(
        "templates/t.fr.hbs",
        &crate::common::template(
            "{{invoice.number}} ({{invoice.extra.po}})",
            "Région {{invoice.extra.region}}",
        ),
    );
    let reminders = preview_json(&f, "--as-of 2026-12-10 --days 1 --render");
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(str_of(&reminders[0], "subject"), "F1 (PO-77)");
    assert_eq!(str_of(&reminders[0], "body"), "Région north\n");
}

#[test]
fn pipe_separated_tags_reach_scripts_and_customer_tags_are_their_union() {
    let f = folder(&[
        inv("F1", "2026-12-10", "10")
            .customer("C1", "Acme")
            .with("tags", "vip|public-sector"),
        inv("F2", "2026-12-10", "10").customer("C1", "Acme"),
        inv("F3", "2026-12-10", "10")
            .customer("C2", "Beta")
            .with("tags", "public-sector"),
    ]);
    f.write(
        "rules/vip.yaml",
        "name: vip\npriority: 5\napplies_to: 'customer.tags.contains(\"vip\")'\nstages: [{id: vip_due, offset: 0, template: t}]\n",
    );
    assert_eq!(
        preview_fields(&f, "--as-of 2026-12-10 --days 1", "invoice policy"),
        vec!["F1 vip", "F2 vip", "F3 p"]
    );
}

#[test]
fn several_addresses_separated_by_semicolons_are_all_recipients() {
    let f = folder(&[inv("F1", "2026-12-10", "10").with("email", "a@x.fr; compta@x.fr")]);
    let r = &preview_json(&f, "--as-of 2026-12-10 --days 1")[0];
    assert_eq!(str_of(r, "to"), "a@x.fr, compta@x.fr");
}

#[test]
fn currency_and_language_default_to_the_config() {
    let f = folder(&[
        inv("F1", "2026-12-10", "10"),
        inv("F2", "2026-12-10", "10").with("currency", "USD"),
    ]);
    f.write("relance.yaml", "currency: CHF\nlanguage: en\n")
        .write(
            "templates/t.en.hbs",
            &crate::common::template("EN {{invoice.number}}", "."),
        );
    assert_eq!(
        preview_fields(
            &f,
            "--as-of 2026-12-10 --days 1",
            "invoice currency language"
        ),
        vec!["F1 CHF en", "F2 USD en"]
    );
}

/// An invoice of 10 due 2026-12-10, issued 2026-11-10, to this customer and address.
fn invoice_to(number: &str, customer_id: &str, name: &str, email: &str) -> Inv {
    inv(number, "2026-12-10", "10")
        .customer(customer_id, name)
        .with("email", email)
        .with("issue_date", "2026-11-10")
}

const BAD_ROW_REPORT: [&str; 4] = [
    "data/invoices.csv:3: amount: expected a decimal number like 1234.56, found \"abc\"",
    "data/invoices.csv:4: issue_date: expected a date in the format %Y-%m-%d, found \"2026-13-01\"",
    "data/invoices.csv:5: customer_id: missing (required)",
    "data/invoices.csv:5: status: expected open, paid, void or disputed, found \"lost\"",
];

/// Three rows with bad values (F2 to F4, lines 3 to 5) between two good ones.
fn folder_with_bad_rows() -> Folder {
    folder(&[
        inv("F1", "2026-12-10", "10"),
        invoice_to("F2", "C2", "Beta", "b@x.fr").with("amount", "abc"),
        invoice_to("F3", "C3", "Gamma", "g@x.fr").with("issue_date", "2026-13-01"),
        invoice_to("F4", "", "Delta", "d@x.fr").with("status", "lost"),
        inv("F5", "2026-12-10", "5"),
    ])
}

#[test]
fn bad_rows_are_reported_skipped_and_counted_while_preview_goes_on() {
    let f = folder_with_bad_rows();
    let mut expected: Vec<&str> = BAD_ROW_REPORT.to_vec();
    expected.push("warning: 3 bad feed row(s) skipped; the other rows were processed");
    assert_eq!(
        stderr_lines(&f, "preview --as-of 2026-12-10 --days 1", 0),
        expected
    );
    assert_due_on_dec_10(&f, &[("F1", "10.00"), ("F5", "5.00")]);
}

#[test]
fn check_counts_bad_rows_as_problems() {
    let f = folder_with_bad_rows();
    let run = run_expect(&f, "check", 1);
    assert_eq!(lines(&f, &run.stdout), BAD_ROW_REPORT.to_vec());
    assert_contains(
        &run.stderr,
        "problems found: 4 error(s), 0 warning(s) in 5 invoice(s) (3 bad row(s))",
    );
}

#[test]
fn a_duplicate_invoice_number_is_a_bad_row() {
    let f = folder(&[inv("F1", "2026-12-10", "10"), inv("F1", "2026-12-10", "99")]);
    assert_eq!(
        check_problems(&f),
        vec![
            "data/invoices.csv:3: number: duplicate invoice number \"F1\" (first seen at data/invoices.csv:2)"
        ]
    );
    assert_due_on_dec_10(&f, &[("F1", "10.00")]);
}

#[test]
fn a_feed_that_cannot_be_read_is_an_error_naming_the_file() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "relance.yaml",
        "feeds: [{path: data/missing.csv}, {path: data/invoices.csv}]\n",
    );
    let preview = run_expect(&f, "preview --as-of 2026-12-10 --days 1", 1);
    assert_eq!(
        lines(&f, &preview.stderr),
        vec!["data/missing.csv: cannot read feed: No such file or directory (os error 2)"]
    );
    // The other feed is still read.
    assert_contains(&preview.stdout, "F1");
    assert_eq!(
        check_problems(&f),
        vec!["data/missing.csv: cannot read feed: No such file or directory (os error 2)"]
    );
}

#[test]
fn a_csv_without_a_required_column_is_an_error_naming_the_file() {
    let f = folder(&[]);
    f.write(
        "data/invoices.csv",
        "number,customer_id,customer_name,issue_date,amount\nF1,C1,Acme,2026-11-10,10\n",
    );
    assert_eq!(
        check_problems(&f),
        vec!["data/invoices.csv:1: missing required column(s): due_date"]
    );
}

#[test]
fn a_json_feed_that_is_not_an_array_is_an_error_naming_the_file() {
    let f = json_feed("data/invoices.json", "{\"number\": \"J1\"}\n");
    let stderr = stderr_lines(&f, "preview --as-of 2026-12-10", 1);
    assert_starts_with(
        &stderr[0],
        "data/invoices.json:1:1: not a JSON array of invoices",
    );
}

#[test]
fn feed_flags_replace_the_configured_feeds() {
    let f = folder(&[inv("CONFIGURED", "2026-12-10", "10")]);
    f.write("other/a.csv", &csv(&[inv("A1", "2026-12-10", "1")]))
        .write("other/b.jsonl", &JSON_LINES.replace("\"L", "\"B"));
    // Paths on the command line are relative to where the command runs.
    assert_eq!(
        invoices_run_from(&f, f.path(), "--feed other/a.csv --feed other/b.jsonl"),
        vec!["A1", "B1", "B2"]
    );
}

/// The invoices of the reminders on 2026-12-10 of `relance --dir F preview …
/// FLAGS` run from the folder `cwd`.
fn invoices_run_from(f: &Folder, cwd: &std::path::Path, flags: &str) -> Vec<String> {
    let run: Run = f
        .command(&args(&format!(
            "preview --as-of 2026-12-10 --days 1 --format json {flags}"
        )))
        .current_dir(cwd)
        .output()
        .expect("run relance")
        .into();
    fields(&array(run.expect_code(0).json()), "invoice")
}

#[test]
fn paid_void_disputed_credit_and_settled_invoices_get_nothing() {
    let f = with_stages(
        &[
            inv("OPEN", "2026-12-10", "100"),
            inv("PARTLY", "2026-12-10", "100").with("amount_paid", "40"),
            inv("PAID", "2026-12-10", "100").with("status", "paid"),
            inv("VOID", "2026-12-10", "100").with("status", "void"),
            inv("DISPUTED", "2026-12-10", "100").with("status", "disputed"),
            inv("CREDIT", "2026-12-10", "-50"),
            inv("ZERO", "2026-12-10", "0"),
            inv("FULLY", "2026-12-10", "100").with("amount_paid", "100"),
            inv("OVERPAID", "2026-12-10", "100").with("amount_paid", "150"),
        ],
        &crate::STANDARD,
    );
    let invoices: std::collections::BTreeSet<String> = fired(&f, "2026-11-01", "400")
        .iter()
        .map(|r| r.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        invoices.into_iter().collect::<Vec<_>>(),
        vec!["OPEN", "PARTLY"]
    );
    let explain = run_expect(&f, "explain DISPUTED --as-of 2026-12-11", 0);
    assert_contains(&explain.stdout, "status disputed");
    assert_contains(
        &explain.stdout,
        "Disputed: nothing fires while the status is disputed; when it changes, its stages resume where they are.",
    );
}

#[test]
fn a_bad_row_of_a_feed_given_on_the_command_line_is_named_as_typed() {
    let f = folder(&[]);
    f.write(
        "exports/a.csv",
        &csv(&[
            inv("A1", "2026-12-10", "1"),
            invoice_to("F9", "C9", "X", "x@x.fr").with("amount", "1.2.3"),
        ]),
    );
    let run = run_inside(
        &f,
        "preview --as-of 2026-12-10 --days 1 --feed exports/a.csv",
    );
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stderr,
        "exports/a.csv:3: amount: expected a decimal number like 1234.56, found \"1.2.3\"\n\
         warning: 1 bad feed row(s) skipped; the other rows were processed\n"
    );
}

/// The French dialect of [`the_french_export_dialect_decimal_comma_date_format_and_column_mapping`]
/// (`decimal: ","`, `;`), its amounts column holding each of `amounts` in turn.
fn decimal_comma_feed(amounts: &[&str]) -> Folder {
    let rows: String = amounts
        .iter()
        .enumerate()
        .map(|(i, amount)| {
            format!(
                "FR-{};C1;Dupont;d@x.fr;2026-11-10;2026-12-10;{amount}\n",
                i + 1
            )
        })
        .collect();
    feed_with(
        "data/fr.csv",
        ", decimal: \",\"",
        &format!("number;customer_id;customer_name;email;issue_date;due_date;amount\n{rows}"),
    )
}

#[test]
fn with_a_decimal_comma_dots_and_spaces_only_group_thousands() {
    let f = decimal_comma_feed(&[
        "1.234.567,89",
        "1234.56",
        "1.5",
        "1 23,4",
        "1 234,5",
        "1.234",
    ]);
    assert_eq!(
        stderr_lines(&f, "preview --as-of 2026-12-10 --days 1", 0),
        vec![
            "data/fr.csv:3: amount: expected a decimal number like 1234,56, found \"1234.56\"",
            "data/fr.csv:4: amount: expected a decimal number like 1234,56, found \"1.5\"",
            "data/fr.csv:5: amount: expected a decimal number like 1234,56, found \"1 23,4\"",
            "warning: 3 bad feed row(s) skipped; the other rows were processed",
        ]
    );
    assert_due_on_dec_10(
        &f,
        &[
            ("FR-1", "1234567.89"),
            ("FR-5", "1234.50"),
            ("FR-6", "1234.00"),
        ],
    );
}

#[test]
fn with_a_decimal_point_spaces_only_group_thousands() {
    let f = folder(&[
        inv("F1", "2026-12-10", "12 345.6"),
        invoice_to("F2", "C2", "Beta", "b@x.fr").with("amount", "1 23.4"),
    ]);
    assert_eq!(
        check_problems(&f),
        vec![
            "data/invoices.csv:3: amount: expected a decimal number like 1234.56, found \"1 23.4\""
        ]
    );
    assert_due_on_dec_10(&f, &[("F1", "12345.60")]);
}

#[test]
fn json_and_json_lines_feeds_may_start_with_a_byte_order_mark() {
    for (name, content) in [
        (
            "data/invoices.json",
            format!("[{}]", JSON_LINES.replace("}\n{", "},{")),
        ),
        ("data/invoices.jsonl", JSON_LINES.to_string()),
    ] {
        let f = json_feed(name, &format!("\u{feff}{content}"));
        assert_clean_and_due_on_dec_10(&f, &[("L1", "10.50"), ("L2", "20.00")]);
    }
}

#[test]
fn json_objects_and_arrays_in_other_fields_are_kept_as_json_text() {
    let f = json_feed(
        "data/invoices.json",
        r#"[{"number": "J1", "customer_id": "C1", "customer_name": "Acme", "email": "a@x.fr",
             "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": 10,
             "address": {"city": "Lyon", "zip": "69001"}, "lines": [1, "a"]}]"#,
    );
    f.write(
        "templates/t.fr.hbs",
        &crate::common::template(
            "{{invoice.number}}",
            "{{invoice.extra.address}} {{invoice.extra.lines}}",
        ),
    );
    let reminders = preview_json(&f, "--as-of 2026-12-10 --days 1 --render");
    assert_eq!(
        str_of(&reminders[0], "body"),
        "{\"city\":\"Lyon\",\"zip\":\"69001\"} [1,\"a\"]\n"
    );
}

#[test]
fn json_amounts_may_be_written_with_an_exponent() {
    let f = json_feed(
        "data/invoices.json",
        r#"[{"number": "J1", "customer_id": "C1", "customer_name": "Acme", "email": "a@x.fr",
             "issue_date": "2026-11-10", "due_date": "2026-12-10", "amount": 1.5E3, "amount_paid": 1e2}]"#,
    );
    assert_due_on_dec_10(&f, &[("J1", "1400.00")]);
}

#[test]
fn mapped_column_names_match_whatever_their_case_and_surrounding_spaces() {
    let f = feed_with(
        "data/export.csv",
        ", columns: {number: facture, amount: \"Montant TTC\"}",
        "FACTURE , customer_id,Customer_Name,email,issue_date,due_date,montant ttc\n\
         F1,C1,Acme,a@x.fr,2026-11-10,2026-12-10,10\n",
    );
    assert_clean_and_due_on_dec_10(&f, &[("F1", "10.00")]);
}

#[test]
fn a_negative_payment_and_values_past_the_header_are_bad_rows() {
    let f = folder(&[
        inv("F1", "2026-12-10", "100"),
        invoice_to("F2", "C2", "Beta", "b@x.fr").with("amount_paid", "-30"),
    ]);
    // One value past the header is a shifted row; empty ones are trailing separators.
    let feed = f.read("data/invoices.csv");
    f.write(
        "data/invoices.csv",
        &format!(
            "{feed}F3,C3,Gamma,g@x.fr,2026-11-10,2026-12-10,1,0,EUR,open,,fr,,,oops\n\
             F4,C4,Delta,d@x.fr,2026-11-10,2026-12-10,4,,,,,,,,,\n"
        ),
    );
    assert_eq!(
        check_problems(&f),
        vec![
            "data/invoices.csv:3: amount_paid: must not be negative, found \"-30\"",
            "data/invoices.csv:4: row has 15 fields, the header has 14",
        ]
    );
    assert_due_on_dec_10(&f, &[("F1", "100.00"), ("F4", "4.00")]);
}

#[test]
fn a_duplicate_column_is_an_error_naming_it() {
    for (settings, columns, message) in [
        ("", "amount,amount", "duplicate column \"amount\""),
        // Two columns mapped to the same field, spelled differently.
        (
            ", columns: {amount: montant}",
            "Montant,MONTANT",
            "duplicate column \"MONTANT\": \"Montant\" already gives amount",
        ),
    ] {
        let f = feed_with(
            "data/invoices.csv",
            settings,
            &format!(
                "number,customer_id,customer_name,issue_date,due_date,{columns}\n\
                 F1,C1,Acme,2026-11-10,2026-12-10,10,20\n"
            ),
        );
        assert_eq!(
            check_problems(&f),
            vec![format!("data/invoices.csv:1: {message}")]
        );
    }
}

#[test]
fn a_lower_case_currency_in_the_config_is_upper_cased() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write("relance.yaml", "currency: usd\n");
    assert_eq!(run_expect(&f, "check", 0).stdout, "");
    assert_eq!(
        preview_fields(&f, "--as-of 2026-12-10 --days 1", "invoice currency"),
        vec!["F1 USD"]
    );
}

#[test]
fn scripts_read_the_config_language_when_the_feed_has_none() {
    let f = with_stages(
        &[],
        &[
            "{id: on_due, offset: 0, template: t, when: 'invoice.language == \"fr\" && customer.language == \"fr\"'}",
        ],
    );
    f.write("relance.yaml", "language: fr\n").write(
        "data/invoices.csv",
        "number,customer_id,customer_name,email,issue_date,due_date,amount\nF1,C1,Acme,a@x.fr,2026-11-10,2026-12-10,10\n",
    );
    assert_eq!(
        preview_fields(&f, "--as-of 2026-12-10 --days 1", "invoice language"),
        vec!["F1 fr"]
    );
}

#[test]
fn a_relative_feed_flag_falls_back_to_the_folder_when_not_in_the_current_one() {
    let f = folder(&[inv("CONFIGURED", "2026-12-10", "10")]);
    f.write("data/b.jsonl", &JSON_LINES.replace("\"L", "\"B"));
    let elsewhere = Folder::empty();
    let flag = "--feed data/b.jsonl";
    assert_eq!(
        invoices_run_from(&f, elsewhere.path(), flag),
        vec!["B1", "B2"]
    );
    // A file of that name where the command runs is still the one meant.
    elsewhere.write("data/b.jsonl", JSON_LINES);
    assert_eq!(
        invoices_run_from(&f, elsewhere.path(), flag),
        vec!["L1", "L2"]
    );
}
