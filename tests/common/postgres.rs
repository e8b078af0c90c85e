//! A throwaway PostgreSQL server for the tests: one cluster per test binary (initdb, pg_ctl), a fresh database per test, stopped at the end.
//!
//! Debian's `postgresql` package puts its server binaries in
//! `/usr/lib/postgresql/VERSION/bin`; `.ci/deps` installs it when they are
//! missing. Without them a test fails and says how to install them: a
//! backend that is not tested must not pass silently. As root (CI, this
//! machine) the server runs as the `postgres` user, which initdb requires.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The variable the tests' folders name in `journal: {url_env: …}`.
pub const URL_ENV: &str = "RELANCE_DATABASE_URL";

/// The cluster of this test binary, started on first use.
pub struct Cluster {
    /// Its data directory (and the socket's), in a temporary folder.
    data: PathBuf,
    root: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// The user the server runs as, when the tests run as root.
    runas: Option<String>,
}

/// A database of its own for one test.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    /// `postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable`
    pub url: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster, started (once per test binary) if it is not yet.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

/// A new, empty database on the cluster.
pub fn database() -> Database {
    cluster().database()
}

/// The server binaries: `initdb` on the PATH, or Debian's newest version.
fn binaries() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file());
    let debian = || {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    };
    on_path.or_else(debian).unwrap_or_else(|| {
        panic!(
            "the PostgreSQL server binaries (initdb, pg_ctl, postgres) are missing: the tests of \
             the PostgreSQL journal need them. Install them with `apt-get install -y postgresql` \
             (Debian, Ubuntu; `bash .ci/deps` does it), or put a PostgreSQL bin folder on the PATH"
        )
    })
}

/// A certificate authority of the test's own (`ca.pem`) and the server's
/// certificate for 127.0.0.1 it signed (`server.pem`, `server.key`), with
/// openssl (which Debian's postgresql package brings, through ssl-cert).
fn make_certificates(root: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(root)
            .output()
            .unwrap_or_else(|e| panic!("openssl (apt-get install -y openssl): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        root.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    std::fs::write(
        root.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .expect("write ca.ext");
    let subject = |cn: &str| format!("/CN={cn}");
    openssl(
        &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        ]
        .into_iter()
        .chain([
            "-out",
            "ca.csr",
            "-subj",
            &subject("relance test authority"),
        ])
        .collect::<Vec<_>>(),
    );
    openssl(&[
        "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-out", "ca.pem", "-days", "2",
        "-extfile", "ca.ext",
    ]);
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
        ]
        .into_iter()
        .chain(["-out", "server.csr", "-subj", &subject("127.0.0.1")])
        .collect::<Vec<_>>(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("the server's key readable by its owner only");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl Cluster {
    fn start() -> Cluster {
        let bin = binaries();
        let root = tempfile::Builder::new()
            .prefix("relance-pg-")
            .tempdir()
            .expect("a temporary folder for the cluster")
            .keep();
        let runas = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_string());
        make_certificates(&root);
        if let Some(user) = &runas {
            let ids = |flag: &str| -> u32 {
                let out = Command::new("id").args([flag, user]).output().expect("id");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| {
                        panic!("the user {user} exists (Debian's postgresql package creates it)")
                    })
            };
            for path in [
                root.clone(),
                root.join("server.pem"),
                root.join("server.key"),
            ] {
                std::os::unix::fs::chown(&path, Some(ids("-u")), Some(ids("-g")))
                    .expect("give the cluster's files to postgres");
            }
        }
        let cluster = Cluster {
            data: root.join("data"),
            root,
            bin,
            port: free_port(),
            runas,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster.pg_ctl("start");
        cluster.watch_for_exit();
        cluster
    }

    /// Runs one of the server's programs (as `postgres` when root).
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = match &self.runas {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.root)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}\n{}\nits log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
        );
    }

    /// `pg_ctl start`, `restart` or `stop`, waiting until it is done.
    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 \
             -c ssl=on -c ssl_cert_file={root}/server.pem -c ssl_key_file={root}/server.key",
            port = self.port,
            root = self.root.display()
        );
        let data = self.data.display().to_string();
        let log = self.root.join("log").display().to_string();
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60", "-m", "fast"];
        if action != "stop" {
            args.extend(["-o", &options]);
        }
        args.push(action);
        self.run("pg_ctl", &args);
    }

    /// Restarts the server (`pg_ctl restart`): every connection is cut.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// Stops the server when this test binary ends, however it ends: at
    /// exit, and from a watcher process when it is killed.
    fn watch_for_exit(&self) {
        extern "C" fn stop_at_exit() {
            if let Some(cluster) = CLUSTER.get() {
                cluster.stop();
            }
        }
        unsafe {
            libc::atexit(stop_at_exit);
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.runas {
            Some(user) => format!(
                "runuser -u {user} -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                self.data.display()
            ),
            None => format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                self.data.display()
            ),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             if [ -f {data}/postmaster.pid ]; then {stop} >/dev/null 2>&1; fi; rm -rf {root}",
            pid = std::process::id(),
            data = self.data.display(),
            root = self.root.display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }

    fn stop(&self) {
        if self.data.join("postmaster.pid").exists() {
            self.pg_ctl("stop");
        }
    }

    /// The certificate of the authority that signed the server's (for
    /// `127.0.0.1`): what `sslrootcert` names to trust it.
    pub fn authority(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// A new database, empty, of a name no other test of any binary has.
    pub fn database(&self) -> Database {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "relance_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = self.admin();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a database");
        Database {
            url: self.url(&name),
            name,
        }
    }

    /// A connection to the `postgres` database, waiting for the server
    /// (it may be restarting).
    pub fn admin(&self) -> postgres::Client {
        connect(&self.url("postgres"))
    }
}

impl Database {
    /// A client on this database.
    pub fn client(&self) -> postgres::Client {
        connect(&self.url)
    }
}

/// A client on `url`, trying for up to 30 s while the server starts.
pub fn connect(url: &str) -> postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match postgres::Client::connect(url, postgres::NoTls) {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot connect to {url}: {e:?}"),
        }
    }
}
