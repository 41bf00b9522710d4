//! A `nanochat serve` child process for tests: started on a free port of 127.0.0.1 with the
//! fixture base directory, found ready by its `listening on http://127.0.0.1:PORT` line, its
//! stderr kept for failure messages, killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nanochat_fixtures::fixture;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A `nanochat serve` child on 127.0.0.1, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `nanochat serve --host 127.0.0.1 --port 0 ARGS` and waits for its
    /// `listening on http://127.0.0.1:PORT` line.
    pub fn start(args: &[&str]) -> Server {
        Self::start_in(args, &fixture("nanochat-2025"), &[])
    }

    /// As [`Server::start`], with another base directory and extra environment variables.
    pub fn start_in(args: &[&str], base_dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nanochat"))
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env("NANOCHAT_BASE_DIR", base_dir)
            .envs(env.iter().copied())
            // `--api-key` defaults to $NANOCHAT_API_KEY: only the flags given here count.
            .env_remove("NANOCHAT_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nanochat serve");
        let stderr = collect(child.stderr.take().expect("stderr is piped"));
        let lines = stdout_lines(child.stdout.take().expect("stdout is piped"));
        let mut server = Server {
            child,
            origin: String::new(),
            stderr,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = listening_port(&line) {
                        server.origin = format!("http://127.0.0.1:{port}");
                        return server;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "nanochat serve {args:?} printed no `listening on http://127.0.0.1:PORT` \
                     line within {STARTUP_TIMEOUT:?}; its stderr:\n{}",
                    server.stderr_text()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(500)); // the last of stderr
                    let status = server.child.try_wait().ok().flatten();
                    panic!(
                        "nanochat serve {args:?} closed its stdout ({}) before listening; its \
                         stderr:\n{}",
                        status.map_or("still running".to_string(), |s| s.to_string()),
                        server.stderr_text()
                    );
                }
            }
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a `listening on http://127.0.0.1:PORT` line.
fn listening_port(line: &str) -> Option<u16> {
    const MARK: &str = "listening on http://127.0.0.1:";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Sends the server's stdout line by line, and keeps draining it (so that the server never
/// blocks on a full pipe) after the receiver has gone.
fn stdout_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = sender.send(line);
        }
    });
    receiver
}

/// Everything a pipe yields, gathered as (lossy) text while the process runs.
pub fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}
