//! The web chat page (`GET /`, crates/server/src/web_ui.html) driven by headless Chromium:
//! `nanochat serve` (simulated models in echo mode, so the answer is known) on a free loopback
//! port, and Chromium opening `/?model=gpt-sim-1&prompt=…`, which selects the model and sends
//! the prompt once the picker is filled. The test talks to Chromium with the DevTools protocol
//! over `--remote-debugging-pipe` (JSON messages ending in NUL on fds 3 and 4), polling the
//! page until its `<body data-state>` says the answer has ended (`--dump-dom` cannot wait for a
//! stream: it snapshots the page mid-answer). It checks the picker, the streamed answer, then a
//! second turn sent with Enter: the whole history in the request, model text shown as text.
//!
//! Chromium: `$NANOCHAT_CHROMIUM`, else `chromium`, `chromium-browser` or `google-chrome` on
//! PATH. None found fails the test (./scripts/test.sh installs Debian's `chromium`): never a skip.

#![cfg(unix)]

mod support;

use support::server::{collect, Server};

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// How long Chromium may take to answer one DevTools command.
const CDP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the page may take to show a whole answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

const PROMPT: &str = "Hello, nanochat!";
/// Echoed back as text: no `<b>` element may appear.
const SECOND: &str = "Is <b>this</b> bold?";

/// What the page shows, as JSON: its state, the picker and the message bubbles.
const SNAPSHOT: &str = r##"JSON.stringify({
  state: document.body.dataset.state,
  models: [...document.querySelectorAll("#model option")].map((o) => [o.value, o.textContent]),
  selected: document.getElementById("model").value,
  messages: [...document.querySelectorAll("#messages > div")].map((d) => [d.className, d.textContent]),
  bold: document.querySelectorAll("#messages b").length,
  search: location.search,
  sent: window.__sent || null,
})"##;

/// Records the bodies the page sends, then types `__TEXT__` and presses Enter.
const SECOND_TURN: &str = r#"(() => {
  window.__sent = [];
  const fetch = window.fetch;
  window.fetch = (url, options) => {
    if (options && options.body) window.__sent.push(JSON.parse(options.body));
    return fetch.call(window, url, options);
  };
  const input = document.getElementById("input");
  input.value = __TEXT__;
  input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  return document.body.dataset.state;
})()"#;

#[test]
fn streamed_answer_appears_in_the_web_ui() {
    let chromium = chromium();
    let server = Server::start(&[
        "--no-discover",
        "--sim-ttft-ms",
        "0",
        "--sim-itl-ms",
        "5",
        "--sim-mode",
        "echo",
    ]);
    let url = format!(
        "{}/?model=gpt-sim-1&prompt={}",
        server.origin,
        PROMPT.replace(' ', "%20").replace(',', "%2C")
    );
    let mut browser = Browser::launch(&chromium);
    let session = browser.open(&url);
    let context = |what: &str, page: &Value| {
        format!(
            "{what}\npage: {page:#}\n--- server stderr ---\n{}",
            server.stderr_text()
        )
    };

    // The first turn: sent by the deep link, streamed into the page.
    let page = browser.wait_for(&session, |p| {
        terminal(p) && p["messages"].as_array().is_some_and(|m| m.len() >= 2)
    });
    assert_eq!(
        page["state"],
        "done",
        "{}",
        context("the answer did not complete", &page)
    );
    let models: Vec<(String, String)> = serde_json::from_value(page["models"].clone()).unwrap();
    for id in ["gpt-sim-1", "gpt-4o", "gpt-3.5-turbo"] {
        assert!(
            models.contains(&(id.to_string(), format!("{id} (simulated)"))),
            "{}",
            context(&format!("the picker lacks {id} (simulated)"), &page)
        );
    }
    assert_eq!(
        page["selected"],
        "gpt-sim-1",
        "{}",
        context("the deep link's model is not selected", &page)
    );
    assert_eq!(
        page["search"],
        "",
        "{}",
        context("the query should leave the address bar", &page)
    );
    assert_eq!(
        page["messages"],
        json!([["msg user", PROMPT], ["msg assistant", PROMPT]]),
        "{}",
        context(
            "the streamed answer (an echo of the prompt) should follow the question",
            &page
        )
    );

    // The second turn: Enter sends, the whole conversation goes with it, text stays text.
    let state = browser.evaluate(
        &session,
        &SECOND_TURN.replace("__TEXT__", &json!(SECOND).to_string()),
    );
    assert_eq!(state, "streaming", "Enter did not send the second message");
    let page = browser.wait_for(&session, |p| {
        terminal(p) && p["messages"].as_array().is_some_and(|m| m.len() >= 4)
    });
    assert_eq!(
        page["state"],
        "done",
        "{}",
        context("the second answer did not complete", &page)
    );
    assert_eq!(
        page["messages"],
        json!([
            ["msg user", PROMPT],
            ["msg assistant", PROMPT],
            ["msg user", SECOND],
            ["msg assistant", SECOND]
        ]),
        "{}",
        context("the second turn is not shown as sent and answered", &page)
    );
    assert_eq!(
        page["bold"],
        0,
        "{}",
        context("model output was rendered as HTML", &page)
    );
    let sent = &page["sent"][0];
    let expected_messages = json!([
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": PROMPT},
        {"role": "user", "content": SECOND}
    ]);
    assert!(
        sent["model"] == "gpt-sim-1"
            && sent["stream"] == true
            && sent["messages"] == expected_messages
            && sent["temperature"].is_number()
            && sent["top_k"].is_number()
            && sent["max_tokens"].is_number(),
        "{}",
        context(
            "the second request should carry the whole conversation and the sampling settings",
            &page
        )
    );
    browser.close();
}

fn terminal(page: &Value) -> bool {
    matches!(page["state"].as_str(), Some("done" | "error" | "stopped"))
}

// ---------------------------------------------------------------------------------------------
// Chromium

/// The Chromium to run: `$NANOCHAT_CHROMIUM`, or the first of the usual names on PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("NANOCHAT_CHROMIUM") {
        return PathBuf::from(path);
    }
    let names = ["chromium", "chromium-browser", "google-chrome"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the web UI test needs Chromium: none of {names:?} is on PATH. Run ./scripts/test.sh \
         (it installs Debian's `chromium` when run as root), install it yourself (Debian/Ubuntu: \
         apt-get install chromium), or set NANOCHAT_CHROMIUM to a Chromium or Chrome binary."
    );
}

/// A headless Chromium driven over `--remote-debugging-pipe`; killed when dropped.
struct Browser {
    child: Child,
    to_browser: std::io::PipeWriter,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
    stderr: Arc<Mutex<String>>,
    profile: PathBuf,
    closing: bool,
}

impl Browser {
    fn launch(chromium: &PathBuf) -> Browser {
        let profile = std::env::temp_dir().join(format!("nanochat-web-ui-{}", unique()));
        // Chromium reads commands from fd 3 and writes replies and events to fd 4.
        let (commands_read, to_browser) = std::io::pipe().expect("pipe");
        let (from_browser, replies_write) = std::io::pipe().expect("pipe");
        let (fd3, fd4) = (commands_read.as_raw_fd(), replies_write.as_raw_fd());
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        extern "C" {
            fn dup2(old: i32, new: i32) -> i32;
            fn close(fd: i32) -> i32;
        }
        // SAFETY: only dup2 and close (async-signal-safe) run between fork and exec. The pipe
        // ends may already be fds 3 or 4 (and are close-on-exec), so they go through fds 1000
        // and 1001: copies made by dup2 onto another number do not have close-on-exec set.
        unsafe {
            command.pre_exec(move || {
                for (from, to) in [(fd3, 1000), (fd4, 1001), (1000, 3), (1001, 4)] {
                    if dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                close(1000);
                close(1001);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
        drop((commands_read, replies_write)); // Chromium's ends: only the child holds them now
        let stderr = collect(child.stderr.take().expect("stderr is piped"));
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_browser);
            let mut message = Vec::new();
            while matches!(reader.read_until(0, &mut message), Ok(n) if n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if sender.send(value).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        Browser {
            child,
            to_browser,
            from_browser: receiver,
            next_id: 0,
            stderr,
            profile,
            closing: false,
        }
    }

    /// Sends a DevTools command (to a page when `session` is given) and returns its result.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self.to_browser.write_all(&bytes) {
            panic!(
                "{}",
                self.failure(&format!("cannot send {method} to Chromium: {e}"))
            );
        }
        let deadline = Instant::now() + CDP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(reply) if reply["id"] == id => {
                    return match reply.get("error") {
                        Some(error) => Err(format!("{method}: {error}")),
                        None => Ok(reply["result"].clone()),
                    };
                }
                Ok(_event) => {}
                Err(e) => panic!(
                    "{}",
                    self.failure(&format!("no reply from Chromium to {method} ({e})"))
                ),
            }
        }
    }

    /// Opens `url` in a new tab; returns the DevTools session attached to it.
    fn open(&mut self, url: &str) -> String {
        let target = self
            .call(None, "Target.createTarget", json!({"url": url}))
            .unwrap_or_else(|e| panic!("{}", self.failure(&e)));
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .unwrap_or_else(|e| panic!("{}", self.failure(&e)));
        attached["sessionId"]
            .as_str()
            .expect("a sessionId")
            .to_string()
    }

    /// The value of a JavaScript expression in the page (an error while it navigates: Err).
    fn try_evaluate(&mut self, session: &str, expression: &str) -> Result<Value, String> {
        let result = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    fn evaluate(&mut self, session: &str, expression: &str) -> Value {
        self.try_evaluate(session, expression)
            .unwrap_or_else(|e| panic!("{}", self.failure(&e)))
    }

    /// Polls the page's SNAPSHOT until `done` holds for it; returns that snapshot.
    fn wait_for(&mut self, session: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(Value::String(text)) = self.try_evaluate(session, SNAPSHOT) {
                last = serde_json::from_str(&text).expect("the snapshot is JSON");
                if done(&last) {
                    return last;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{}",
            self.failure(&format!(
                "the page did not finish an answer within {ANSWER_TIMEOUT:?}; last seen: {last:#}"
            ))
        );
    }

    /// Asks Chromium to quit (and gives it a few seconds to, when dropped).
    fn close(mut self) {
        if self.call(None, "Browser.close", json!({})).is_ok() {
            self.closing = true;
        }
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "{what}\n--- chromium stderr ---\n{}",
            self.stderr.lock().unwrap()
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.closing && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}
