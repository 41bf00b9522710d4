//! `nanochat pull` and `--model hf:…` against a loopback imitation of the hub
//! (nanochat_fixtures::fake_hub), never the internet: a pull a user can chat with, the no-op
//! second pull, offline use, `--convert`, clear errors, and `serve` pulling on first start
//! while `/ready` answers 503, then starting from the cache with the hub unreachable.

mod support;

use std::time::{Duration, Instant};

use nanochat_fixtures::fake_hub::{tiny_release, FakeHub, HubRepo};
use nanochat_fixtures::scratch_dir;
use support::server::Server;
use support::{failure, nanochat_env, success};

/// A port nothing listens on: a hub that cannot be reached.
const DEAD_HUB: &str = "http://127.0.0.1:9";

fn hub() -> FakeHub {
    let hub = FakeHub::start();
    hub.add_repo(
        "tiny/nanochat",
        HubRepo {
            commit: "d".repeat(40),
            files: tiny_release(),
            token: None,
        },
    );
    hub
}

fn generate_ids(model: &str, base: &std::path::Path, env: &[(&str, &str)]) -> serde_json::Value {
    let args = [
        "generate",
        "--model",
        model,
        "--prompt",
        "The capital of France",
        "--max-tokens",
        "6",
        "--json",
    ];
    let json: serde_json::Value =
        serde_json::from_str(&success(&nanochat_env(&args, base, env, ""))).unwrap();
    json["ids"].clone()
}

#[test]
fn pull_then_use_offline_then_convert() {
    let hub = hub();
    let endpoint = hub.endpoint();
    let base = scratch_dir("cli-pull");
    let env = [("HF_ENDPOINT", endpoint.as_str())];
    let out = nanochat_env(&["pull", "tiny/nanochat"], &base, &env, "");
    let text = success(&out);
    let dir = base.join("chatsft_checkpoints/d3");
    assert!(
        text.contains("pulled tiny/nanochat") && text.contains(&dir.display().to_string()),
        "{text}"
    );
    assert!(text.contains("nanochat chat -i sft -g d3"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("model_000650.pt: verified"));

    let text = success(&nanochat_env(&["pull", "tiny/nanochat"], &base, &env, ""));
    assert!(text.contains("up to date"), "{text}");

    // hf: with the hub unreachable and offline mode on: the cache, and the same model as by path.
    let offline = [("HF_ENDPOINT", DEAD_HUB), ("HF_HUB_OFFLINE", "1")];
    let by_hub = generate_ids("hf:tiny/nanochat", &base, &offline);
    let by_path = generate_ids(&dir.display().to_string(), &base, &[]);
    assert_eq!(by_hub, by_path);
    assert_eq!(
        by_hub.as_array().map(Vec::len),
        Some(6),
        "6 new tokens: {by_hub}"
    );

    let text = success(&nanochat_env(
        &["pull", "tiny/nanochat", "--convert", "--dtype", "bf16"],
        &base,
        &env,
        "",
    ));
    assert!(
        text.contains("converted to") && dir.join("model_000650.safetensors").is_file(),
        "{text}"
    );
    // Loaders now prefer the converted file.
    let out = nanochat_env(
        &[
            "generate",
            "--model",
            "hf:tiny/nanochat",
            "--prompt",
            "Hi",
            "--max-tokens",
            "1",
        ],
        &base,
        &offline,
        "",
    );
    success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("model_000650.safetensors"));
}

#[test]
fn pull_errors_say_what_to_do() {
    let hub = hub();
    let endpoint = hub.endpoint();
    let base = scratch_dir("cli-pull-errors");
    let env = [("HF_ENDPOINT", endpoint.as_str())];
    let err = failure(&nanochat_env(&["pull", "nobody/nothing"], &base, &env, ""));
    assert!(err.contains("nobody/nothing was not found"), "{err}");
    let err = failure(&nanochat_env(&["pull", "just-a-name"], &base, &env, ""));
    assert!(err.contains("expected owner/name"), "{err}");
    let err = failure(&nanochat_env(
        &["pull", "tiny/nanochat", "--offline"],
        &base,
        &env,
        "",
    ));
    assert!(err.contains("not in the cache"), "{err}");
    let err = failure(&nanochat_env(
        &["pull", "tiny/nanochat"],
        &base,
        &[("HF_ENDPOINT", DEAD_HUB)],
        "",
    ));
    assert!(
        err.contains("cannot reach") && err.contains("--offline"),
        "{err}"
    );
    let err = failure(&nanochat_env(
        &["generate", "--model", "hf:tiny/nanochat", "--prompt", "Hi"],
        &base,
        &[("HF_ENDPOINT", DEAD_HUB)],
        "",
    ));
    assert!(err.contains("cannot reach"), "{err}");
}

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().expect("the server answers");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn wait_ready(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&format!("{}/ready", server.origin)).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never ready; stderr:\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_pulls_a_hub_model_on_first_start_then_uses_the_cache() {
    let hub = hub();
    // Four files at 0.5 s each: the server is up well before the model is.
    hub.delay_transfers(Duration::from_millis(500));
    let endpoint = hub.endpoint();
    let base = scratch_dir("cli-serve-hub");
    let args = [
        "--model",
        "hf:tiny/nanochat",
        "--no-discover",
        "--no-simulate",
    ];
    let server = Server::start_in(&args, &base, &[("HF_ENDPOINT", endpoint.as_str())]);
    let (status, body) = get(&format!("{}/ready", server.origin));
    assert_eq!(status, 503, "{body}");
    wait_ready(&server);
    let (status, models) = get(&format!("{}/v1/models", server.origin));
    assert_eq!(status, 200);
    let models: serde_json::Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], "tiny/nanochat");
    assert_eq!(models["data"][0]["max_model_len"], 64);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&format!("{}/v1/chat/completions", server.origin))
        .header("Content-Type", "application/json")
        .send(r#"{"model": "tiny/nanochat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}"#)
        .unwrap();
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(response.status().as_u16(), 200, "{body}");
    drop(server);

    // The hub is gone: the next start loads the copy pulled before.
    let server = Server::start_in(&args, &base, &[("HF_ENDPOINT", DEAD_HUB)]);
    wait_ready(&server);
    let (_, models) = get(&format!("{}/v1/models", server.origin));
    assert!(models.contains("tiny/nanochat"));
    assert!(
        server
            .stderr_text()
            .contains("using the copy pulled before"),
        "{}",
        server.stderr_text()
    );
}
