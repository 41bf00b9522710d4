//! The client against a scripted HTTP/1.1 server: timings of a good stream (frames split
//! anywhere), and each kind of failure counted under its label.

use super::*;

/// A scripted HTTP/1.1 server on a std thread: each request gets the next response, written
/// in the given pieces (with a pause between them); `close` ends the connection after it.
struct Scripted {
    pieces: Vec<Vec<u8>>,
    close: bool,
}

fn chunked(pieces: &[&str]) -> Vec<Vec<u8>> {
    let mut out = vec![
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec(),
    ];
    for p in pieces {
        out.push(format!("{:x}\r\n{p}\r\n", p.len()).into_bytes());
    }
    out
}

fn scripted_server(mut script: Vec<Scripted>) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    script.reverse();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            stream.set_nodelay(true).unwrap();
            loop {
                // Read one request: headers, then content-length bytes of body.
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => request.push(byte[0]),
                        _ => break,
                    }
                }
                if request.is_empty() {
                    break;
                }
                let head = String::from_utf8_lossy(&request).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                let mut body = vec![0u8; length];
                stream.read_exact(&mut body).unwrap();
                let Some(response) = script.pop() else { return };
                for piece in &response.pieces {
                    stream.write_all(piece).unwrap();
                    stream.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
                if response.close {
                    break;
                }
            }
        }
    });
    addr
}

fn target(addr: SocketAddr) -> Target {
    Target {
        addr,
        host: HeaderValue::from_static("test"),
        path: "/v1/chat/completions".into(),
        models_path: "/v1/models".into(),
        auth: None,
        body: Bytes::from_static(b"{}"),
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn requests_are_measured_and_failures_counted_by_kind() {
    let role =
        r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#;
    let text = r#"data: {"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#;
    let usage = r#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}"#;
    let ok = chunked(&[
        &format!("{role}\n\n"),
        // A frame split inside its JSON, and one split between "\r" and "\n".
        &text[..30],
        &format!("{}\n\n{text}\r", &text[30..]),
        &format!("\n\r\n: keep-alive\n\n{usage}\n\ndata: [DONE]\n\n"),
        "",
    ]);
    let error_event = chunked(&[
        &format!("{role}\n\n"),
        "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
        "",
    ]);
    let body = r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#;
    let too_many = vec![format!("HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()];
    let mut cut = chunked(&[&format!("{role}\n\n{text}\n\n")]);
    cut.push(b"40\r\ndata: {\"cho".to_vec());
    let addr = scripted_server(vec![
        Scripted {
            pieces: ok.clone(),
            close: false,
        },
        Scripted {
            pieces: too_many,
            close: false,
        },
        Scripted {
            pieces: error_event,
            close: true,
        },
        Scripted {
            pieces: ok,
            close: false,
        },
        Scripted {
            pieces: cut,
            close: true,
        },
    ]);
    let target = target(addr);
    let mut worker = Worker::new();
    for _ in 0..5 {
        worker.run_one(&target).await;
    }
    assert_eq!(worker.samples.len(), 2);
    for s in &worker.samples {
        assert_eq!(s.completion_tokens, 7);
        assert!(!s.usage_missing);
        let ttft = s.ttft.expect("content arrived");
        assert!(ttft > 0.0 && ttft <= s.e2e);
    }
    // Two content chunks per successful stream: one gap each.
    assert_eq!(worker.itls.len(), 2);
    let errors: Vec<(&str, usize)> = worker
        .errors
        .iter()
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    assert_eq!(
        errors,
        [
            ("HTTP 429 rate_limit_error", 1),
            ("error event: server_error", 1),
            ("mid-stream: connection closed by the server", 1),
        ]
    );
    // The script is used up: the server hangs up without an answer.
    worker.run_one(&target).await;
    assert_eq!(
        worker.errors.get("connection closed by the server"),
        Some(&1)
    );
    // Nobody listens: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    worker.run_one(&self::target(closed)).await;
    assert_eq!(
        worker.errors.get("connect: ConnectionRefused"),
        Some(&1),
        "{:?}",
        worker.errors
    );
    assert_eq!(worker.samples.len(), 2);
}
