//! A real SMTP server (mailin-embedded) on 127.0.0.1 for the tests that
//! deliver over SMTP: it records each message it accepts, with its
//! envelope's recipients, and follows a [`Script`] (refusals, a held
//! message, a login). Included by those tests with
//! `#[path = "common/smtp.rs"] mod smtp;` beside `mod common;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use mailin_embedded::{Action, AuthMechanism, Handler, Response, response};
use mailparse::{MailHeaderMap, ParsedMail};

use crate::common::{DEADLINE, wait_until};

/// What the test SMTP server does with the messages it is given, numbered
/// from 0 in the order their DATA commands arrive.
#[derive(Clone, Default)]
pub struct Script {
    /// Answers the DATA command of the first N messages with a temporary failure.
    pub refuse_first: usize,
    /// Holds message K, all its data received, before answering, until the
    /// test calls [`SmtpServer::release`]: the client is then in the middle of a batch.
    pub hold: Option<usize>,
    /// Offers AUTH PLAIN without TLS and accepts only this user and password.
    pub login: Option<(&'static str, &'static str)>,
    /// Refuses these recipients for good (550 to their RCPT TO).
    pub reject: &'static [&'static str],
    /// Refuses these recipients for now (451 to their RCPT TO).
    pub defer: &'static [&'static str],
}

/// A message the server accepted (answered 250 to).
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope's recipients (RCPT TO).
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
}

impl Mail {
    pub fn parsed(&self) -> ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("a MIME message")
    }
    pub fn header(&self, name: &str) -> String {
        self.parsed()
            .headers
            .get_first_value(name)
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

/// What the server has seen.
#[derive(Default)]
struct Seen {
    /// Every DATA command, accepted or refused: when, and for whom.
    attempts: Vec<(Instant, Vec<String>)>,
    accepted: Vec<Mail>,
    /// AUTH PLAIN attempts: (user, password).
    logins: Vec<(String, String)>,
    holding: bool,
    /// The message held, all its data received.
    held: Option<Mail>,
    /// The test's verdict on the held message: accept it or not.
    verdict: Option<bool>,
}

struct Shared {
    script: Script,
    seen: Mutex<Seen>,
    changed: Condvar,
}

impl Shared {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

/// A real SMTP server (mailin-embedded) on a free port of 127.0.0.1 that
/// records what it receives and follows a [`Script`].
pub struct SmtpServer {
    pub port: u16,
    shared: Arc<Shared>,
}

impl SmtpServer {
    /// A server that accepts every message.
    pub fn accepting() -> SmtpServer {
        SmtpServer::start(Script::default())
    }

    /// A server that refuses the first `n` messages (451), then accepts.
    pub fn refusing_first(n: usize) -> SmtpServer {
        SmtpServer::start(Script {
            refuse_first: n,
            ..Script::default()
        })
    }

    /// A server that holds message `k` (see [`Script::hold`]).
    pub fn holding(k: usize) -> SmtpServer {
        SmtpServer::start(Script {
            hold: Some(k),
            ..Script::default()
        })
    }

    /// A server that offers AUTH PLAIN and accepts only `user` and `password`.
    pub fn with_login(user: &'static str, password: &'static str) -> SmtpServer {
        SmtpServer::start(Script {
            login: Some((user, password)),
            ..Script::default()
        })
    }

    pub fn start(script: Script) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let auth = script.login.is_some();
        let shared = Arc::new(Shared {
            script,
            seen: Mutex::default(),
            changed: Condvar::new(),
        });
        let session = Session {
            shared: shared.clone(),
            message: None,
            recipients: Vec::new(),
            data: Vec::new(),
        };
        if auth {
            std::thread::spawn(move || serve_with_plaintext_auth(listener, session));
        } else {
            let mut server = mailin_embedded::Server::new(session);
            server
                .with_name("localhost")
                .with_ssl(mailin_embedded::SslConfig::None)
                .expect("no TLS")
                // More than relance's default connections (4): each holds a thread.
                .with_num_threads(8)
                .with_tcp_listener(listener);
            std::thread::spawn(move || {
                if let Err(e) = server.serve() {
                    panic!("SMTP server: {e}");
                }
            });
        }
        SmtpServer { port, shared }
    }

    /// The `delivery:` line of relance.yaml for this server.
    pub fn delivery(&self) -> String {
        format!(
            "delivery: {{kind: smtp, host: 127.0.0.1, port: {}, tls: none}}",
            self.port
        )
    }

    /// The `delivery:` line for this server with one connection: emails
    /// go out one after another in the order planned, which the tests of
    /// a batch interrupted at a given message rely on.
    pub fn delivery_in_order(&self) -> String {
        format!(
            "delivery: {{kind: smtp, host: 127.0.0.1, port: {}, tls: none, connections: 1}}",
            self.port
        )
    }

    pub fn accepted(&self) -> Vec<Mail> {
        self.shared.seen().accepted.clone()
    }

    pub fn attempts(&self) -> Vec<(Instant, Vec<String>)> {
        self.shared.seen().attempts.clone()
    }

    pub fn logins(&self) -> Vec<(String, String)> {
        self.shared.seen().logins.clone()
    }

    /// Waits until the scripted message is held.
    pub fn wait_until_holding(&self) {
        assert!(
            wait_until(DEADLINE, || self.shared.seen().holding),
            "the server never received the message to hold"
        );
    }

    /// Waits at most `timeout` until the scripted message is held, and
    /// returns it (not accepted: the server has not answered its data).
    pub fn wait_until_held(&self, timeout: std::time::Duration) -> Mail {
        assert!(
            wait_until(timeout, || self.shared.seen().holding),
            "the server never received the message to hold"
        );
        self.shared.seen().held.clone().expect("the held message")
    }

    /// Lets the held message go: accepted (250) or not (451).
    pub fn release(&self, accept: bool) {
        self.shared.seen().verdict = Some(accept);
        self.shared.changed.notify_all();
    }

    /// Waits until `n` messages have been accepted.
    pub fn wait_for_accepted(&self, n: usize) -> Vec<Mail> {
        assert!(
            wait_until(DEADLINE, || self.accepted().len() >= n),
            "{} message(s) accepted, {n} expected",
            self.accepted().len()
        );
        self.accepted()
    }
}

/// One SMTP connection's handler (mailin-embedded clones one per connection).
#[derive(Clone)]
struct Session {
    shared: Arc<Shared>,
    /// The number of the message being received.
    message: Option<usize>,
    recipients: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Session {
    fn rcpt(&mut self, to: &str) -> Response {
        if self.shared.script.reject.contains(&to) {
            return Response::custom(550, "5.1.1 No such mailbox".into());
        }
        if self.shared.script.defer.contains(&to) {
            return Response::custom(451, "4.2.1 Mailbox busy, try again later".into());
        }
        response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        let mut seen = self.shared.seen();
        let n = seen.attempts.len();
        seen.attempts.push((Instant::now(), to.to_vec()));
        if n < self.shared.script.refuse_first {
            return Response::custom(451, "4.3.0 Mailbox busy, try again later".into());
        }
        self.message = Some(n);
        self.recipients = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut seen = self.shared.seen();
        if self.message.is_some() && self.message == self.shared.script.hold {
            seen.holding = true;
            seen.held = Some(Mail {
                recipients: self.recipients.clone(),
                raw: self.data.clone(),
            });
            seen = self
                .shared
                .changed
                .wait_while(seen, |s| s.verdict.is_none())
                .unwrap();
            if seen.verdict == Some(false) {
                return Response::custom(451, "4.3.0 Not accepted".into());
            }
        }
        seen.accepted.push(Mail {
            recipients: self.recipients.clone(),
            raw: std::mem::take(&mut self.data),
        });
        response::OK
    }

    fn auth_plain(&mut self, _authorization_id: &str, user: &str, password: &str) -> Response {
        self.shared
            .seen()
            .logins
            .push((user.to_string(), password.to_string()));
        if self.shared.script.login == Some((user, password)) {
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

/// mailin-embedded offers AUTH only after STARTTLS, which relance rightly
/// refuses with a self-signed certificate: for the AUTH test, mailin's own
/// session is driven here, with AUTH PLAIN allowed in clear on 127.0.0.1.
fn serve_with_plaintext_auth(listener: TcpListener, session: Session) {
    let mut sessions = mailin::SessionBuilder::new("localhost");
    sessions
        .enable_auth(AuthMechanism::Plain)
        .insecure_enable_plaintext_auth();
    for stream in listener.incoming().flatten() {
        let (sessions, session) = (sessions.clone(), session.clone());
        std::thread::spawn(move || converse(&sessions, session, stream));
    }
}

fn converse(
    sessions: &mailin::SessionBuilder,
    handler: Session,
    stream: TcpStream,
) -> std::io::Result<()> {
    let mut session = sessions.build(stream.peer_addr()?.ip(), handler);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    session.greeting().write_to(&mut writer)?;
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line)? > 0 {
        let response = session.process(&line);
        line.clear();
        match response.action {
            Action::Reply => response.write_to(&mut writer)?,
            Action::Close => return response.write_to(&mut writer),
            Action::NoReply | Action::UpgradeTls => {}
        }
    }
    Ok(())
}
