//! Log capture for unit tests: what a closure logged on its own thread.
//!
//! One global subscriber, installed once, writes each thread's log lines to
//! that thread's capture buffer while [`logged`] runs (and drops them
//! otherwise). A scoped subscriber per test (`tracing::subscriber::with_default`)
//! is not reliable when tests run in parallel: a callsite's interest and the
//! global maximum level are cached across threads, so a warning could be
//! filtered out while another test's subscriber came and went.

use std::cell::RefCell;
use std::sync::OnceLock;

thread_local! {
    static CAPTURE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

struct Writer;

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buf) = c.borrow_mut().as_mut() {
                buf.extend_from_slice(b);
            }
        });
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns what it logged on this thread (INFO and above).
pub(crate) fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let sub = tracing_subscriber::fmt()
            .with_writer(|| Writer)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        // Another harness may have installed one first: then nothing is
        // captured and the tests that read the log say so.
        let _ = tracing::subscriber::set_global_default(sub);
    });
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let value = f();
    let text = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (value, String::from_utf8_lossy(&text).into_owned())
}
