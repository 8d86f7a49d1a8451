//! `crisiswatch run` as a child process: its config, its applied log, its
//! HTTP endpoints; killed on drop.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::client::Pos;
use super::wait_until;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");

/// A running `crisiswatch run`.
pub struct Service {
    child: Child,
    pub name: String,
    pub dir: PathBuf,
    pub applied_log: PathBuf,
    stderr: PathBuf,
    http: String,
}

impl Service {
    /// Writes `config` into `dir/<name>.toml` and starts the service; waits
    /// until it serves HTTP.
    pub fn start(dir: &Path, name: &str, config: &str) -> Service {
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, config).unwrap();
        let applied_log = dir.join(format!("{name}.applied"));
        let stderr = dir.join(format!("{name}.stderr"));
        let stdout = dir.join(format!("{name}.stdout"));
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--applied-log")
            .arg(&applied_log)
            .env(
                "CRISISWATCH_LOG",
                std::env::var("CRISISWATCH_TEST_LOG")
                    .unwrap_or_else(|_| "info,librdkafka=warn".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start crisiswatch run");
        let mut s = Service {
            child,
            name: name.to_string(),
            dir: dir.to_path_buf(),
            applied_log,
            stderr,
            http: String::new(),
        };
        let marker = "Serving /metrics and /readyz on http://";
        let mut addr = None;
        wait_until(Duration::from_secs(20), "the service serves HTTP", || {
            assert!(s.running(), "{} exited early:\n{}", s.name, s.stderr_text());
            addr = s
                .stderr_text()
                .lines()
                .find_map(|l| l.split_once(marker).map(|(_, a)| a.trim().to_string()));
            addr.is_some()
        });
        s.http = addr.unwrap_or_default();
        s
    }

    /// The service's stderr so far (its logs).
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The `host:port` the service's HTTP listener is on.
    pub fn addr(&self) -> &str {
        &self.http
    }

    /// Sends a signal to the service (`kill -SIG pid`).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// HTTP GET; (status, body). A refused connection is status 0.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, None, "")
    }

    /// An HTTP request with an optional bearer token and a JSON body;
    /// (status, body). A refused connection is status 0.
    #[allow(dead_code)]
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        super::http(&self.http, method, path, token, body)
    }

    pub fn ready(&self) -> bool {
        self.get("/readyz").0 == 200
    }

    /// The value of one exposition line, e.g. `crisiswatch_kafka_dlq_produced_total{reason="not_json"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Every applied message, in the order applied (a redelivery appears twice).
    pub fn applied(&self) -> Vec<Pos> {
        read_applied(&self.applied_log)
    }

    /// The distinct applied (topic, partition, offset).
    pub fn applied_set(&self) -> BTreeSet<Pos> {
        self.applied().into_iter().collect()
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM failed");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("CRISISWATCH_TEST_DUMP").is_some() {
            // The service's own account of what went wrong, for the failing test.
            let text = self.stderr_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            let keep = std::env::temp_dir().join(format!(
                "crisiswatch-test-{}-{}.stderr",
                self.name,
                self.child.id()
            ));
            let _ = std::fs::write(&keep, &text);
            eprintln!(
                "--- {} stderr (last {} lines; all of it in {}), {} applied ---\n{}",
                self.name,
                tail.len(),
                keep.display(),
                self.applied().len(),
                tail.join("\n")
            );
        }
    }
}

/// Parses an applied log (`topic,partition,offset` lines).
pub fn read_applied(path: &Path) -> Vec<Pos> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line being written has no newline yet: skip it.
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut it = l.rsplitn(3, ',');
            let off = it.next().and_then(|x| x.parse().ok()).expect("offset");
            let part = it.next().and_then(|x| x.parse().ok()).expect("partition");
            let topic = it.next().expect("topic").to_string();
            (topic, part, off)
        })
        .collect()
}
