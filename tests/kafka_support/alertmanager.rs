//! A real Alertmanager (Debian package `prometheus-alertmanager`, installed
//! by `scripts/install-test-deps.sh`) as a child process, and its active
//! alerts read over HTTP.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AM: &str = "prometheus-alertmanager";

pub struct Alertmanager {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Starts one on a free port and waits until it answers ready.
    pub fn start() -> Alertmanager {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(AM).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{AM} is not installed: run scripts/install-test-deps.sh (apt-get install -y prometheus-alertmanager)"
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(
            &cfg,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(AM)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let am = Alertmanager {
            child,
            addr: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        let ready = Instant::now() + Duration::from_secs(30);
        while am.get("/-/ready").0 != 200 {
            assert!(Instant::now() < ready, "Alertmanager did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn get(&self, path: &str) -> (u16, String) {
        super::http(&self.addr, "GET", path, None, "")
    }

    /// The alerts it holds active now (`None`: it did not answer).
    pub fn active(&self) -> Option<Vec<serde_json::Value>> {
        let (status, body) = self.get("/api/v2/alerts?active=true&silenced=false&inhibited=false");
        if status != 200 {
            return None;
        }
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        Some(
            all.into_iter()
                .filter(|a| a["status"]["state"] == "active")
                .collect(),
        )
    }
}
