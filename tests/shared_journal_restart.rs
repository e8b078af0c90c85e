//! Two `relance run` daemons on one PostgreSQL journal whose server restarts in the middle of a batch: they reconnect, and nothing is lost or sent twice (counted at a real SMTP server). A test binary of its own: the restart cuts every connection to its cluster.

#[macro_use]
mod common;
#[path = "common/smtp.rs"]
mod smtp;

use std::collections::BTreeMap;

use common::*;
use smtp::SmtpServer;

#[test]
fn a_database_restarted_in_the_middle_of_a_batch_loses_and_doubles_nothing() {
    let server = SmtpServer::accepting();
    let delivery = server
        .delivery()
        .replace("tls: none", "tls: none, connections: 1");
    // Claims outlast the restart: a daemon that was answered by the SMTP
    // server journals the outcome once the database is back, before any
    // other could take its claim.
    let folder = dunning_folder(
        &format!(
            "limits: {{max_per_run: 5000}}\n{delivery}\n\
             journal: {{url_env: RELANCE_DATABASE_URL, lease_seconds: 30}}"
        ),
        &invoices(1000),
    )
    .on(Backend::Postgres);
    let mut daemons = folder.spawn_daemons(2);
    assert!(
        wait_until(BATCH_DEADLINE, || server.accepted().len() >= 200),
        "{} accepted",
        server.accepted().len()
    );
    postgres::cluster().restart();
    assert!(
        wait_until(BATCH_DEADLINE, || folder.count_in_state("sent") == 1000),
        "{} of 1000 sent",
        folder.count_in_state("sent")
    );
    // The restart reached them in the middle of their work.
    let cut = daemons.iter_mut().any(|d| {
        d.next_line(DEADLINE, |l| {
            l.contains("trying again") || l.contains("once the journal answers")
        })
        .is_some()
    });
    assert!(cut, "no daemon lost its connection");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for mail in server.accepted() {
        *seen.entry(mail.header("Message-ID")).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(seen.len(), 1000);
}
