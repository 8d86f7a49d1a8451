//! A local HTTP receiver for incident webhooks: records every POSTed JSON
//! body, in arrival order, and answers 200 — or 500 while it is set failing
//! (the bodies it refused are kept apart). Thread per connection,
//! keep-alive supported.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Log {
    got: Mutex<Vec<serde_json::Value>>,
    refused: Mutex<Vec<serde_json::Value>>,
    failing: AtomicBool,
}

/// The receiver; its thread stops with the test process.
pub struct Receiver {
    pub url: String,
    log: Arc<Log>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let log = Arc::new(Log::default());
        let g = Arc::clone(&log);
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let g = Arc::clone(&g);
                std::thread::spawn(move || serve(conn, &g));
            }
        });
        Receiver { url, log }
    }

    /// Every body accepted so far, in arrival order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.log.got.lock().unwrap().clone()
    }

    /// Every body answered 500 so far.
    pub fn refused(&self) -> Vec<serde_json::Value> {
        self.log.refused.lock().unwrap().clone()
    }

    /// Answers 500 (`true`) or 200 from now on.
    pub fn set_failing(&self, failing: bool) {
        self.log.failing.store(failing, Ordering::SeqCst);
    }
}

fn serve(conn: TcpStream, log: &Log) {
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        // Request line, then headers up to the blank line.
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let failing = log.failing.load(Ordering::SeqCst);
        if let Ok(v) = serde_json::from_slice(&body) {
            let to = if failing { &log.refused } else { &log.got };
            to.lock().unwrap().push(v);
        }
        let reply = if failing {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        } else {
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
