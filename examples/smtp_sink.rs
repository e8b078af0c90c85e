//! A real SMTP server on 127.0.0.1 that accepts every message and counts
//! them, for bench/run.sh's delivery figures.
//!
//! cargo run --release --example smtp_sink -- 2525

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mailin_embedded::{Handler, Server, SslConfig};

#[derive(Clone)]
struct Count(Arc<AtomicU64>);

impl Handler for Count {
    fn data_end(&mut self) -> mailin_embedded::Response {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(1000) {
            eprintln!("smtp_sink: {n} messages");
        }
        mailin_embedded::response::OK
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args().nth(1).map_or(Ok(2525), |p| p.parse())?;
    let mut server = Server::new(Count(Arc::new(AtomicU64::new(0))));
    server
        .with_name("localhost")
        .with_ssl(SslConfig::None)?
        .with_num_threads(4)
        .with_addr(("127.0.0.1", port))?;
    eprintln!("smtp_sink: listening on 127.0.0.1:{port}");
    server.serve()?;
    Ok(())
}
