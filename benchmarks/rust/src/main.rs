//! The benchmarks' custom-runtime `bootstrap`: a Runtime API client with std only, written the
//! way the Rust runtime (`lambda_runtime`) talks (one keep-alive connection, TCP_NODELAY, each
//! request in one write), doing as little as possible so that what is timed is the runner.
//!
//! `_HANDLER` selects the answer:
//!   trivial     `{"ok":true}`
//!   bytes:N     a JSON string of N bytes in all; then it prints `POST_NS <nanoseconds>`, the
//!               time from writing the response to reading the reply (the server's side of a
//!               large response, timed from outside), and exits 0. It ignores SIGTERM, so a
//!               server that stops it at once cannot cut that line off.
//!
//! It prints nothing else. When `next` fails (the server closed the connection) it exits 0.

use std::env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::exit;
use std::time::Instant;

const API: &str = "/2018-06-01/runtime";
const SIGTERM: i32 = 15;
const SIG_IGN: usize = 1;

extern "C" {
    // libc's signal(2), which std links anyway (no crate needed).
    fn signal(signum: i32, handler: usize) -> usize;
}

struct Client {
    host: String,
    conn: BufReader<TcpStream>,
}

impl Client {
    /// One request, headers and body in one buffer (written in one go).
    fn encode(&self, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    /// Send an encoded request and return the reply's status, request id header and body.
    fn send(&mut self, request: &[u8]) -> Option<(u16, String, Vec<u8>)> {
        self.conn.get_mut().write_all(request).ok()?;
        self.reply()
    }

    fn reply(&mut self) -> Option<(u16, String, Vec<u8>)> {
        let mut line = String::new();
        if self.conn.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status = line.split_whitespace().nth(1)?.parse().ok()?;
        let (mut length, mut request_id) = (0usize, String::new());
        loop {
            line.clear();
            self.conn.read_line(&mut line).ok()?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':')?;
            if name.eq_ignore_ascii_case("Content-Length") {
                length = value.trim().parse().ok()?;
            } else if name.eq_ignore_ascii_case("Lambda-Runtime-Aws-Request-Id") {
                request_id = value.trim().to_string();
            }
        }
        let mut body = vec![0; length];
        self.conn.read_exact(&mut body).ok()?;
        Some((status, request_id, body))
    }
}

fn answer(handler: &str) -> Vec<u8> {
    match handler.strip_prefix("bytes:").and_then(|n| n.parse::<usize>().ok()) {
        Some(size) => {
            let mut body = vec![b'x'; size.max(2)];
            body[0] = b'"';
            *body.last_mut().unwrap() = b'"';
            body
        }
        None => br#"{"ok":true}"#.to_vec(),
    }
}

fn main() {
    let Ok(host) = env::var("AWS_LAMBDA_RUNTIME_API") else { exit(2) };
    let handler = env::var("_HANDLER").unwrap_or_default();
    let Ok(stream) = TcpStream::connect(&host) else { exit(2) };
    if stream.set_nodelay(true).is_err() {
        exit(2);
    }
    let mut client = Client { host, conn: BufReader::new(stream) };
    let body = answer(&handler);
    let timed = handler.starts_with("bytes:");
    if timed {
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe { signal(SIGTERM, SIG_IGN) };
    }
    loop {
        let next = client.encode("GET", &format!("{API}/invocation/next"), b"");
        let Some((200, request_id, _event)) = client.send(&next) else { exit(0) };
        let path = format!("{API}/invocation/{request_id}/response");
        let response = client.encode("POST", &path, &body);
        let started = Instant::now();
        let Some((202, _, _)) = client.send(&response) else { exit(1) };
        if timed {
            println!("POST_NS {}", started.elapsed().as_nanos());
            std::io::stdout().flush().ok();
            exit(0);
        }
    }
}
