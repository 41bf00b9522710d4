//! `nanochat serve` driven by a real client: the official `openai` Python SDK runs
//! `openai_sdk/check_openai_sdk.py` against a server started on a free loopback port with the
//! golden fixtures as NANOCHAT_BASE_DIR (simulated models and nanochat checkpoints, streaming,
//! tools, JSON schema, logprobs, legacy completions, the SDK's exception classes, API keys,
//! injected faults and the request size limit).
//!
//! Python: `$NANOCHAT_TEST_PYTHON` if set (it must import `openai`), else a venv made once at
//! `<target>/openai-sdk-venv` with `python3 -m venv` and `pip install openai==OPENAI_VERSION`
//! from PyPI. A missing Python or venv module fails the test with what to install: never a skip.

mod support;

use support::server::Server;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nanochat_fixtures::fixtures_dir;

/// The SDK release the checks are written against (the newest 2.x on PyPI when written).
const OPENAI_VERSION: &str = "2.54.0";
/// How long one run of the Python checks may take.
const CHECKS_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn sdk_against_simulated_and_real_models() {
    let python = python();
    let server = Server::start(&[
        "--max-model-len",
        "640",
        "--sim-ttft-ms",
        "0",
        "--sim-itl-ms",
        "0",
    ]);
    assert_checks_pass(&python, &server, &["--suite", "main"]);
}

#[test]
fn sdk_api_key() {
    let python = python();
    let server = Server::start(&["--api-key", "sekret"]);
    assert_checks_pass(&python, &server, &["--suite", "auth"]);
}

#[test]
fn sdk_error_classes() {
    let python = python();
    let types = [
        "rate_limit",
        "invalid_api_key",
        "context_length",
        "server_error",
        "invalid_request",
        "model_not_found",
    ];
    // Every type runs, then all the failures are reported together.
    let failures: Vec<String> = types
        .iter()
        .filter_map(|kind| {
            let server = Server::start(&["--failure-rate", "100", "--failure-types", kind]);
            run_checks(&python, &server, &["--suite", "fault", "--fault", kind]).err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn sdk_request_size_limit() {
    let python = python();
    let server = Server::start(&["--max-request-bytes", "10000"]);
    assert_checks_pass(&python, &server, &["--suite", "limits"]);
}

// ---------------------------------------------------------------------------------------------
// The server

// ---------------------------------------------------------------------------------------------
// The Python checks

fn assert_checks_pass(python: &Path, server: &Server, suite: &[&str]) {
    if let Err(report) = run_checks(python, server, suite) {
        panic!("{report}");
    }
}

/// Runs check_openai_sdk.py with `python` against `server`; Err holds a report of what failed.
fn run_checks(python: &Path, server: &Server, suite: &[&str]) -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_sdk/check_openai_sdk.py");
    let mut command = Command::new(python);
    command
        .arg(&script)
        .arg("--base-url")
        .arg(format!("{}/v1", server.origin))
        .arg("--fixtures")
        .arg(fixtures_dir())
        .args(suite)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_LOG");
    let (status, stdout, stderr) = run_with_timeout(command, CHECKS_TIMEOUT);
    match status {
        Some(s) if s.success() => {
            println!("{stdout}");
            Ok(())
        }
        _ => Err(format!(
            "openai SDK checks {suite:?} against {} failed ({}).\n--- checks stdout ---\n{stdout}\
             \n--- checks stderr ---\n{stderr}\n--- server stderr ---\n{}",
            server.origin,
            match status {
                Some(s) => s.to_string(),
                None => format!("killed after {CHECKS_TIMEOUT:?}"),
            },
            server.stderr_text()
        )),
    }
}

/// Runs `command` to its end or for at most `limit` (then kills it: status None); returns its
/// status, stdout and stderr.
fn run_with_timeout(mut command: Command, limit: Duration) -> (Option<ExitStatus>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = reader(child.stdout.take().expect("stdout is piped"));
    let stderr = reader(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the checks") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = |h: JoinHandle<Vec<u8>>| String::from_utf8_lossy(&h.join().unwrap()).into_owned();
    (status, text(stdout), text(stderr))
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

// ---------------------------------------------------------------------------------------------
// The Python environment

/// The interpreter that runs the checks: made (or checked) once per test binary; every test
/// function waits for the first one's work.
fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(find_or_make_python) {
        Ok(python) => python.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn find_or_make_python() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("NANOCHAT_TEST_PYTHON") {
        let python = PathBuf::from(python);
        return match sdk_version(&python) {
            Some(_) => Ok(python),
            None => Err(format!(
                "NANOCHAT_TEST_PYTHON={} cannot import openai: pip install openai=={OPENAI_VERSION} \
                 into it, or unset NANOCHAT_TEST_PYTHON to use a venv made by the test",
                python.display()
            )),
        };
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    let venv = target.join("openai-sdk-venv");
    if sdk_version(&venv_python(&venv)).as_deref() == Some(OPENAI_VERSION) {
        return Ok(venv_python(&venv));
    }
    // A venv is made under a unique name and renamed into place once it works, so a half-made
    // one (an interrupted run, another test process at work) is never used.
    std::fs::create_dir_all(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
    let unique = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    if venv.exists() {
        // Another openai version (or a broken venv): move it out of the way, then delete it.
        let stale = target.join(format!("openai-sdk-venv.stale-{unique}"));
        if std::fs::rename(&venv, &stale).is_ok() {
            let _ = std::fs::remove_dir_all(&stale);
        }
    }
    let fresh = target.join(format!("openai-sdk-venv.tmp-{unique}"));
    let made = make_venv(&fresh);
    if let Err(message) = made {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(message);
    }
    if std::fs::rename(&fresh, &venv).is_err() {
        // Another process got there first: use its venv if it works.
        let _ = std::fs::remove_dir_all(&fresh);
        if sdk_version(&venv_python(&venv)).as_deref() != Some(OPENAI_VERSION) {
            return Err(format!(
                "could not put a venv in place at {}",
                venv.display()
            ));
        }
    }
    Ok(venv_python(&venv))
}

/// `python3 -m venv DIR` and `pip install openai==OPENAI_VERSION` into it.
fn make_venv(dir: &Path) -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .output()
        .map_err(|e| {
            format!(
                "the openai SDK tests need Python 3 (`python3` on PATH), which could not be run \
                 ({e}): install python3 and python3-venv (Debian/Ubuntu: apt-get install python3 \
                 python3-venv), or set NANOCHAT_TEST_PYTHON to a Python with openai=={OPENAI_VERSION}"
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "`python3 -m venv {}` failed: install Python's venv module (Debian/Ubuntu: apt-get \
             install python3-venv), or set NANOCHAT_TEST_PYTHON to a Python with \
             openai=={OPENAI_VERSION}.\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let python = venv_python(dir);
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .arg(format!("openai=={OPENAI_VERSION}"))
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`pip install openai=={OPENAI_VERSION}` into {} failed (PyPI must be reachable; or \
             set NANOCHAT_TEST_PYTHON to a Python with that package):\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    match sdk_version(&python) {
        Some(v) if v == OPENAI_VERSION => Ok(()),
        other => Err(format!(
            "after pip install, {} imports openai {other:?}, not {OPENAI_VERSION}",
            python.display()
        )),
    }
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// The openai version `python` imports, or None if it cannot.
fn sdk_version(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args(["-c", "import openai, pydantic; print(openai.__version__)"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
