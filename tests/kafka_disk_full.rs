//! A data directory that fills up under a running `crisiswatch run` (a real
//! broker, the service as a child process, a real webhook receiver): the
//! outbox and the state store fail loudly, `/readyz` says why, consumption
//! pauses and nothing is committed past what is stored, and the service
//! recovers by itself when space returns. A read-only data directory stops a
//! start with an error that names it.
//!
//! The data directory is a small tmpfs mounted for the test, so "full" and
//! "read-only" are the kernel's own ENOSPC and EROFS. Mounting needs root (or
//! CAP_SYS_ADMIN), which CI has; elsewhere the test says it is skipped.

mod kafka_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kafka_support::broker::Broker;
use kafka_support::client::{committed, create_topics, produce};
use kafka_support::receiver::Receiver;
use kafka_support::service::Service;
use kafka_support::{base_config, complaint_burst, hour_t0, wait_until};

/// A tmpfs of `size` mounted at a directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn remount(&self, mode: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(st.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system of `dir` with `dir/filler` until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC: {e}");
            break;
        }
    }
    // The last partial chunk too, byte by byte would be slow: 4 KiB steps.
    while f
        .write_all(&chunk[..4096])
        .and_then(|()| f.sync_all())
        .is_ok()
    {}
    path
}

const RULE: &str = r#"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 20 }
"#;

fn opened(rx: &Receiver) -> Vec<String> {
    rx.bodies()
        .iter()
        .filter(|b| b["action"] == "open")
        .map(|b| b["group"]["product"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_full_then_read_only_data_dir_pauses_without_committing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(fs) = Tmpfs::mount(&data, "8m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("complaints", 1)]);
    let rx = Receiver::start();
    let group = "disk-full";
    let cfg = format!(
        "{}{RULE}\n[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"{}\"\n",
        base_config(
            &bs,
            group,
            &[("complaints", Some("complaint"))],
            "",
            data.to_str().unwrap(),
        )
        .replace("[engine]\n", "[engine]\nallowed_lateness = \"1s\"\n")
        .replace("[incidents]\n", "[incidents]\nupdate_interval = \"0\"\n")
        .replace(
            "[sources.kafka]\n",
            "[state]\ncheckpoint_interval = \"1s\"\n\n[sources.kafka]\n"
        ),
        rx.url
    );
    let svc = Service::start(dir.path(), "svc", &cfg);
    let offset = || {
        committed(&bs, group, &[("complaints", 1)])
            .get(&("complaints".to_string(), 0))
            .copied()
            .unwrap_or(0)
    };
    let failures = || {
        svc.metric("crisiswatch_outbox_write_failures_total")
            .unwrap_or(0.0)
    };
    let start = hour_t0();

    // Healthy: the incident goes out, every offset is committed.
    produce(
        &bs,
        &complaint_burst("one", "p1", start, 30),
        Duration::from_secs(30),
    );
    wait_until(Duration::from_secs(60), "the first incident", || {
        opened(&rx) == ["p1"]
    });
    wait_until(Duration::from_secs(60), "the first burst committed", || {
        offset() == 31
    });
    assert!(svc.ready());

    // Disk full: the next incident cannot be stored.
    let filler = fill(&fs.path);
    produce(
        &bs,
        &complaint_burst("two", "p2", start + 5 * 60_000, 30),
        Duration::from_secs(30),
    );
    wait_until(Duration::from_secs(60), "the outbox write fails", || {
        failures() >= 1.0
    });
    wait_until(Duration::from_secs(30), "/readyz says why", || {
        let (status, body) = svc.get("/readyz");
        status == 503 && body.contains("cannot write the data directory")
    });
    let (_, status) = svc.get("/api/v1/status");
    assert!(status.contains("\"storage_error\":\""), "{status}");
    // Several commit intervals later nothing past the stored events is
    // committed, and the unstored incident did not go out.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(offset(), 31, "committed past what the outbox stored");
    }
    assert_eq!(opened(&rx), ["p1"]);

    // Space returns: the service recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(60), "the second incident", || {
        opened(&rx) == ["p1", "p2"]
    });
    wait_until(Duration::from_secs(60), "ready again", || svc.ready());
    wait_until(
        Duration::from_secs(60),
        "the second burst committed",
        || offset() == 62,
    );

    // Read-only (the kernel refuses to make a file system with open writers
    // read-only, so this is the start of a service on one): it fails loudly,
    // naming the directory, and commits nothing.
    drop(svc);
    fs.remount("ro");
    let out = Command::new(kafka_support::service::BIN)
        .args(["run", "--config"])
        .arg(dir.path().join("svc.toml"))
        .env("CRISISWATCH_LOG", "warn,librdkafka=off")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(data.to_str().unwrap()) && stderr.contains("readonly"),
        "{stderr}"
    );
    assert_eq!(offset(), 62);
    // Writable again: a new start carries on where the last one committed.
    fs.remount("rw");
    let svc = Service::start(dir.path(), "svc", &cfg);
    produce(
        &bs,
        &complaint_burst("three", "p3", start + 10 * 60_000, 30),
        Duration::from_secs(30),
    );
    wait_until(Duration::from_secs(60), "the third incident", || {
        opened(&rx) == ["p1", "p2", "p3"]
    });
    wait_until(Duration::from_secs(60), "the third burst committed", || {
        offset() == 93
    });
    drop(svc);
}

/// The state store on a file system of its own that fills up: checkpoints
/// fail, `/readyz` and `/api/v1/status` name the store's own error (not only
/// "see the log"), and both clear by themselves once space returns.
#[test]
fn a_full_state_dir_is_named_in_readyz_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let Some(fs) = Tmpfs::mount(&state, "4m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let data = dir.path().join("data");
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("complaints", 1)]);
    let group = "state-full";
    let cfg = base_config(
        &bs,
        group,
        &[("complaints", Some("complaint"))],
        "",
        data.to_str().unwrap(),
    )
    .replace("[engine]\n", "[engine]\nallowed_lateness = \"1s\"\n")
    .replace(
        "[sources.kafka]\n",
        &format!(
            "[state]\ncheckpoint_interval = \"1s\"\ndir = \"{}\"\n\n[sources.kafka]\n",
            state.display()
        ),
    ) + RULE;
    let svc = Service::start(dir.path(), "svc", &cfg);
    let metric = |name: &str| svc.metric(name).unwrap_or(0.0);
    let start = hour_t0();
    produce(
        &bs,
        &complaint_burst("one", "p1", start, 30),
        Duration::from_secs(30),
    );
    wait_until(Duration::from_secs(60), "a checkpoint written", || {
        metric("crisiswatch_checkpoints_total") >= 1.0
    });
    wait_until(Duration::from_secs(60), "ready", || svc.ready());

    // The state file system fills: the next checkpoints (each one appends to
    // the store's write-ahead log) cannot be written.
    let filler = fill(&fs.path);
    let mut tag = 0;
    wait_until(Duration::from_secs(60), "a checkpoint fails", || {
        // New slices keep the snapshot changing (and growing).
        tag += 1;
        produce(
            &bs,
            &complaint_burst(&format!("more{tag}"), &format!("p{tag}"), start, 5),
            Duration::from_secs(30),
        );
        metric("crisiswatch_checkpoint_failures_total") >= 1.0
    });
    wait_until(Duration::from_secs(30), "/readyz names the error", || {
        let (status, body) = svc.get("/readyz");
        status == 503
            && body.contains("state store: the last checkpoint could not be written: ")
            && body.contains(state.to_str().unwrap())
            && body.contains("full")
    });
    let (_, status) = svc.get("/api/v1/status");
    assert!(
        status.contains("the last checkpoint could not be written: state store"),
        "{status}"
    );

    // Space returns: checkpoints are written again and readiness comes back.
    let written = metric("crisiswatch_checkpoints_total");
    std::fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(60), "ready again", || svc.ready());
    wait_until(Duration::from_secs(60), "checkpoints again", || {
        metric("crisiswatch_checkpoints_total") > written
    });
    let (status, body) = svc.get("/readyz");
    assert_eq!(status, 200, "{body}");
    let (_, status) = svc.get("/api/v1/status");
    assert!(status.contains("\"storage_error\":null"), "{status}");
    drop(svc);
}
