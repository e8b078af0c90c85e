//! The PostgreSQL journal through the binary: `check` on a database it cannot use, and `journal copy` from SQLite.
//! (The journal's and the daemon's behaviour on both backends are in
//! src/journal's unit tests and tests/daemon.rs.)

#[macro_use]
mod common;

use common::*;

/// A folder whose config names the PostgreSQL journal, with no database.
fn folder_naming_postgres() -> Folder {
    let folder = dunning_folder("", &invoices(2));
    let config = folder.read("relance.yaml");
    folder.write(
        "relance.yaml",
        &format!("{config}journal: {{url_env: RELANCE_DATABASE_URL}}\n"),
    );
    folder
}

#[test]
fn check_says_which_variable_is_unset_with_exit_2() {
    let folder = folder_naming_postgres();
    let mut cmd = folder.command(&["check"]);
    cmd.env_remove(postgres::URL_ENV);
    let run: Run = cmd.output().unwrap().into();
    let run = run.expect_code(2);
    assert_contains(&run.stderr, "RELANCE_DATABASE_URL is not set");
}

#[test]
fn check_names_an_unreachable_server_and_its_error_never_the_password() {
    let folder = folder_naming_postgres();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = folder.command(&["check"]);
    cmd.env(
        postgres::URL_ENV,
        format!("postgres://relance:s3cret@127.0.0.1:{port}/dunning"),
    );
    let run: Run = cmd.output().unwrap().into();
    let run = run.expect_code(2);
    assert_contains(
        &run.stderr,
        &format!(
            "RELANCE_DATABASE_URL (127.0.0.1:{port}/dunning): journal: error connecting to server"
        ),
    );
    assert_contains(&run.stderr, "refused");
    assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
}

#[test]
fn check_is_quiet_about_a_database_it_reaches() {
    let folder = dunning_folder("", &invoices(2)).on(Backend::Postgres);
    folder.run(&["check"]).expect_code(0);
}

/// `relance journal copy --to postgres` with the URL of `database`.
fn copy_into(folder: &Folder, database: &postgres::Database) -> Run {
    let mut cmd = folder.command(&["journal", "copy", "--to", "postgres"]);
    cmd.env(postgres::URL_ENV, &database.url);
    cmd.output().unwrap().into()
}

#[test]
fn a_journal_copied_to_postgres_resends_nothing_and_goes_on_there() {
    // Two days on SQLite: sent, skipped and awaiting rows.
    let folder = Folder::sample();
    for day in [AS_OF, "2026-12-15"] {
        folder
            .run(&["run", "--once", "--as-of", day])
            .expect_code(0);
    }
    let before = folder.journal();
    let outbox = folder.files("outbox");
    let database = postgres::database();

    let run = copy_into(&folder, &database).expect_code(0);
    assert_contains(
        &run.stdout,
        &format!("copied {} reminder(s) from ", before.len()),
    );
    let sums: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("checksum of "))
        .map(|l| l.rsplit(": ").next().unwrap())
        .collect();
    assert_eq!(sums.len(), 2, "{}", run.stdout);
    assert_eq!(sums[0], sums[1]);
    assert_eq!(sums[0].len(), 64, "a SHA-256 in hex");
    let sent = before.iter().filter(|r| r.state == "sent").count();
    assert_contains(&run.stdout, &format!("  sent: {sent}\n"));

    // Switched: the same evaluation again sends nothing, the next day's
    // reminders go on from the copied rows.
    let config = folder.read("relance.yaml");
    let config: String = config
        .lines()
        .filter(|l| !l.starts_with("journal:"))
        .map(|l| format!("{l}\n"))
        .collect();
    folder.write(
        "relance.yaml",
        &format!("{config}journal: {{url_env: RELANCE_DATABASE_URL}}\n"),
    );
    let again = |day: &str| -> Run {
        let mut cmd = folder.command(&["run", "--once", "--as-of", day]);
        cmd.env(postgres::URL_ENV, &database.url);
        cmd.output().unwrap().into()
    };
    let run = again("2026-12-15").expect_code(0);
    assert_contains(&run.stderr, "due=0 sent=0");
    assert_eq!(folder.files("outbox"), outbox, "nothing was sent again");
    let mut client = database.client();
    let rows: i64 = client
        .query_one("SELECT COUNT(*) FROM reminder", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows as usize, before.len());

    // A second copy into the same, now full, database is refused.
    folder.write("relance.yaml", &config);
    let refused = copy_into(&folder, &database).expect_code(2);
    assert_contains(&refused.stderr, "already holds reminders");
}

#[test]
fn a_copy_without_a_journal_or_without_the_variable_is_refused() {
    let folder = dunning_folder("", &invoices(1));
    let database = postgres::database();
    let none = copy_into(&folder, &database).expect_code(2);
    assert_contains(&none.stderr, "there is no journal to copy");

    folder
        .run(&["run", "--once", "--as-of", AS_OF])
        .expect_code(0);
    let mut cmd = folder.command(&[
        "journal",
        "copy",
        "--to",
        "postgres",
        "--url-env",
        "NOWHERE_URL",
    ]);
    cmd.env_remove("NOWHERE_URL");
    let unset: Run = cmd.output().unwrap().into();
    let unset = unset.expect_code(2);
    assert_contains(&unset.stderr, "NOWHERE_URL is not set");
}

/// The URL of `database` over TLS, as `sslmode` and `sslrootcert` say.
fn over_tls(database: &postgres::Database, options: &str) -> String {
    database.url.replace("sslmode=disable", options)
}

#[test]
fn the_journal_goes_over_tls_checking_the_server_against_sslrootcert() {
    let folder = dunning_folder("", &invoices(2)).on(Backend::Postgres);
    let database = folder.database().unwrap().clone();
    let authority = postgres::cluster().authority();
    let url = over_tls(
        &database,
        &format!("sslmode=verify-full&sslrootcert={}", authority.display()),
    );
    let with_url = |args: &[&str], url: &str| -> Run {
        let mut cmd = folder.command(args);
        cmd.env(postgres::URL_ENV, url);
        cmd.output().unwrap().into()
    };
    with_url(&["check"], &url).expect_code(0);
    // A daemon over TLS: the server sees its connection encrypted.
    let mut daemon = {
        let mut cmd = folder.command(&DAEMON);
        cmd.env(postgres::URL_ENV, &url);
        Spawned::start(cmd)
    };
    daemon.expect_evaluation();
    assert_eq!(folder.journal_states().len(), 2);
    let encrypted: i64 = database
        .client()
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.application_name = '' AND s.ssl \
               AND a.backend_type = 'client backend'",
            &[&database.name],
        )
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "relance's connection uses TLS");
    drop(daemon);

    // Without the authority, the test's certificate is no one Mozilla trusts.
    let refused = with_url(&["check"], &over_tls(&database, "sslmode=require")).expect_code(2);
    assert_contains(&refused.stderr, "error performing TLS handshake");
    assert_contains(&refused.stderr, "certificate");
}
