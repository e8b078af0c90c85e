//! Micro-benchmarks of each step of the pipeline, on the shipped rules and
//! templates: feed parsing (both CSV dialects, JSON Lines), the decision for
//! one invoice, one `when` evaluation, one render (text and HTML), one
//! journal insert. Whole commands are timed by bench/run.sh.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use relance::internals::{
    CustomerView, FeedConfig, Identity, InvoiceView, JournalRow, State, Variables, load_feeds,
};
use relance::{InvoiceId, Journal, Options, Project};

const ROWS: usize = 20_000;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
}

/// A copy of the shipped folder with a feed of `ROWS` invoices in three encodings.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["rules", "templates", "templates/partials"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(repo.join(sub)).unwrap().flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    std::fs::copy(repo.join("relance.yaml"), dir.path().join("relance.yaml")).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let mut csv = String::from(
        "number,customer_id,customer_name,email,issue_date,due_date,amount,amount_paid,currency,status,language,tags\n",
    );
    let mut french = String::from(
        "N° facture;customer_id;customer_name;email;issue_date;due_date;amount;amount_paid;currency;status;language;tags\n",
    );
    let mut jsonl = String::new();
    for i in 0..ROWS {
        let due = as_of() + chrono::Duration::days((i as i64 * 7919) % 211 - 150);
        let issue = due - chrono::Duration::days(30 + (i as i64 % 3) * 15);
        let (cents, customer) = ((i * 104_729) % 900_000 + 1_000, i % 997);
        let (language, tags) = if i % 5 == 0 {
            ("en", "key-account")
        } else {
            ("fr", "")
        };
        csv += &format!(
            "F{i:07},C{customer:04},Client {customer} SARL,compta{customer}@client.example,{issue},{due},{}.{:02},0,EUR,open,{language},{tags}\n",
            cents / 100,
            cents % 100
        );
        french += &format!(
            "F{i:07};C{customer:04};Client {customer} SARL;compta{customer}@client.example;{};{};{} {:03},{:02};0;EUR;open;{language};{tags}\n",
            issue.format("%d/%m/%Y"),
            due.format("%d/%m/%Y"),
            cents / 100_000,
            cents / 100 % 1000,
            cents % 100
        );
        jsonl += &format!(
            "{{\"number\":\"F{i:07}\",\"customer_id\":\"C{customer:04}\",\"customer_name\":\"Client {customer}\",\"issue_date\":\"{issue}\",\"due_date\":\"{due}\",\"amount\":{}.{:02}}}\n",
            cents / 100,
            cents % 100
        );
    }
    std::fs::write(dir.path().join("data/invoices.csv"), csv).unwrap();
    std::fs::write(dir.path().join("data/french.csv"), french).unwrap();
    std::fs::write(dir.path().join("data/invoices.jsonl"), jsonl).unwrap();
    dir
}

fn project(dir: &Path) -> Project {
    let options = Options {
        dir: dir.to_path_buf(),
        config: None,
        feeds: vec![dir.join("data/invoices.csv")],
    };
    let project = Project::load(&options).unwrap();
    assert!(!project.problems.has_errors(), "{:?}", project.problems);
    project
}

fn feeds(c: &mut Criterion) {
    let dir = folder();
    let project = project(dir.path());
    let mut group = c.benchmark_group("feed");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    let mut french = FeedConfig::new(PathBuf::from("data/french.csv"));
    french.decimal = ',';
    french.date_format = "%d/%m/%Y".into();
    french.columns.insert("number".into(), "N° facture".into());
    let cases = [
        ("csv", FeedConfig::new(PathBuf::from("data/invoices.csv"))),
        ("csv_french_dialect", french),
        (
            "jsonl",
            FeedConfig::new(PathBuf::from("data/invoices.jsonl")),
        ),
    ];
    for (name, feed) in cases {
        let load = load_feeds(&project.config, std::slice::from_ref(&feed), as_of());
        assert_eq!(load.invoices.len(), ROWS, "{name}: {:?}", load.problems);
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(load_feeds(
                    &project.config,
                    std::slice::from_ref(&feed),
                    as_of(),
                ))
            })
        });
    }
    group.finish();
}

fn decide(c: &mut Criterion) {
    let dir = folder();
    let project = project(dir.path());
    let evaluator = project.evaluator();
    let overdue = (0..ROWS)
        .map(InvoiceId::new)
        .find(|&i| project.ledger.invoices[i].days_overdue(as_of()) == 20)
        .unwrap();
    c.bench_function("decide/one_invoice", |b| {
        b.iter(|| black_box(evaluator.evaluate(overdue, as_of(), &[], None)))
    });

    let policy = project
        .rulebook
        .policies
        .iter()
        .find(|p| p.stages.iter().any(|s| s.when.is_some()))
        .expect("a shipped stage with `when`");
    let stage = policy.stages.iter().find(|s| s.when.is_some()).unwrap();
    let mut scope = Variables {
        invoice: InvoiceView {
            ledger: project.ledger.clone(),
            index: overdue,
            today: as_of(),
        },
        customer: CustomerView {
            ledger: project.ledger.clone(),
            index: project.ledger.customer_index(overdue),
            today: as_of(),
            last_contacted: None,
        },
        today: as_of(),
        sent: vec![],
    }
    .into_scope(Some(stage.view(0)));
    let when = stage.when.as_ref().unwrap();
    c.bench_function("decide/when_expression", |b| {
        b.iter(|| black_box(project.rulebook.scripts.eval_bool(when, &mut scope)))
    });
}

fn render(c: &mut Criterion) {
    let dir = folder();
    let project = project(dir.path());
    let plan = project
        .evaluator()
        .plan(as_of(), 1, &Default::default(), None);
    let text_only = plan
        .reminders
        .iter()
        .find(|p| project.reminder(p, true).html.is_none())
        .copied()
        .expect("a text-only reminder");
    let with_html = plan
        .reminders
        .iter()
        .find(|p| project.reminder(p, true).html.is_some())
        .copied()
        .expect("a reminder with HTML");
    c.bench_function("render/subject_only", |b| {
        b.iter(|| black_box(project.reminder(&text_only, false)))
    });
    c.bench_function("render/text", |b| {
        b.iter(|| black_box(project.reminder(&text_only, true)))
    });
    c.bench_function("render/text_and_html", |b| {
        b.iter(|| black_box(project.reminder(&with_html, true)))
    });
}

fn journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("relance.db")).unwrap();
    let mut n = 0u32;
    c.bench_function("journal/insert_in_transaction_of_256", |b| {
        b.iter_batched(
            || {
                n += 1;
                (0..256)
                    .map(|i| Identity {
                        invoice: format!("F{n}-{i}"),
                        policy: "standard".into(),
                        stage: "overdue_1".into(),
                        occurrence: 0,
                    })
                    .collect::<Vec<_>>()
            },
            |ids| {
                let tx = journal.begin().unwrap();
                for id in &ids {
                    let row = JournalRow {
                        channel: "email".into(),
                        recipient: "a@b.c".into(),
                        subject: "s".into(),
                        message_id: "<m>".into(),
                        message: "m".into(),
                        ..JournalRow::new(id.clone(), State::Planned, "2026-12-01")
                    };
                    journal.insert(&row, "2026-12-01T09:00:00Z").unwrap();
                }
                tx.commit().unwrap();
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, feeds, decide, render, journal);
criterion_main!(benches);
