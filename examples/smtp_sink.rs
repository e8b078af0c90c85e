//! A real SMTP server on 127.0.0.1 that accepts every message and counts
//! them, for bench/run.sh's delivery figures; with `--log FILE` it also
//! appends each message's Message-ID to FILE, for bench/faults.sh to count
//! what was lost and what arrived twice.
//!
//! cargo run --release --example smtp_sink -- 2525 [--log ids.txt]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mailin_embedded::{Handler, Server, SslConfig};

#[derive(Clone)]
struct Count {
    received: Arc<AtomicU64>,
    log: Option<Arc<Mutex<std::fs::File>>>,
    /// The Message-ID of the message being received.
    id: Option<String>,
    /// The start of a header line split between two chunks of data.
    partial: String,
}

impl Handler for Count {
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> mailin_embedded::Response {
        self.id = None;
        self.partial.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.log.is_some() && self.id.is_none() {
            self.partial.push_str(&String::from_utf8_lossy(buf));
            let id = self.partial.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("message-id")
                    .then(|| value.trim().to_string())
            });
            if id.is_some() {
                self.id = id;
                self.partial.clear();
            }
        }
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let n = self.received.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(1000) {
            eprintln!("smtp_sink: {n} messages");
        }
        if let Some(log) = &self.log {
            let id = self.id.take().unwrap_or_else(|| "(no Message-ID)".into());
            // Logged before the reply: a message in the log is one the
            // server accepted, whatever happens to the client after.
            let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
            if writeln!(file, "{id}").and_then(|()| file.flush()).is_err() {
                return mailin_embedded::response::INTERNAL_ERROR;
            }
        }
        mailin_embedded::response::OK
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut port = 2525;
    let mut log = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--log" => {
                let path = args.next().ok_or("--log needs a file")?;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                log = Some(Arc::new(Mutex::new(file)));
            }
            _ => port = arg.parse()?,
        }
    }
    let mut server = Server::new(Count {
        received: Arc::new(AtomicU64::new(0)),
        log,
        id: None,
        partial: String::new(),
    });
    server
        .with_name("localhost")
        .with_ssl(SslConfig::None)?
        .with_num_threads(16)
        .with_addr(("127.0.0.1", port))?;
    eprintln!("smtp_sink: listening on 127.0.0.1:{port}");
    server.serve()?;
    Ok(())
}
