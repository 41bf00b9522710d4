//! Continuous batching of a checkpoint model: concurrent greedy requests decoded together give
//! the tokens each gets alone, the KV budget makes requests wait (never fail) or refuses one
//! that could never fit, and a long prompt is prefilled in chunks between decode steps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nanochat_server::backend::{Backend, BackendStats, Event, FinishReason, GenerationRequest};
use nanochat_server::model_backend::CheckpointBackend;
use tokio::sync::mpsc;

mod support;

/// The fixture model `sft-d2` (640-token context) with `max_seqs` slots.
fn backend(max_seqs: usize, kv_budget_tokens: Option<usize>) -> CheckpointBackend {
    support::sft_d2_backend(|spec| {
        spec.max_seqs = max_seqs;
        spec.kv_budget_tokens = kv_budget_tokens;
    })
}

/// A greedy chat request; prompts of different lengths put the sequences at different positions.
fn greedy(question: &str, max_tokens: usize) -> GenerationRequest {
    support::chat_request("sft-d2", question, max_tokens)
}

#[derive(Debug, PartialEq)]
struct Answer {
    text: String,
    reason: FinishReason,
    completion_tokens: usize,
}

/// Collects a request's events into its answer (one choice).
async fn answer(mut events: mpsc::UnboundedReceiver<Event>) -> Answer {
    let mut text = String::new();
    let mut finished = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::Text { text: piece, .. } => text.push_str(&piece),
            Event::Finished {
                reason,
                completion_tokens,
                ..
            } => finished = Some((reason, completion_tokens)),
            Event::Failed(error) => panic!("the request failed: {error:?}"),
            _ => {}
        }
    }
    let (reason, completion_tokens) = finished.expect("a Finished event");
    Answer {
        text,
        reason,
        completion_tokens,
    }
}

/// Polls `running` until `stop`, returning the largest value seen.
fn watch_peak(stats: Arc<BackendStats>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::SeqCst) {
            peak = peak.max(stats.running.load(Ordering::SeqCst));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        peak
    })
}

fn questions() -> Vec<String> {
    (0..10)
        .map(|i| {
            format!(
                "Question {i}: {}",
                "why is the sky blue? ".repeat(1 + i % 4)
            )
        })
        .collect()
}

#[tokio::test]
async fn ten_concurrent_greedy_requests_match_the_sequential_answers() {
    // Sequential: one sequence at a time.
    let alone = backend(1, None);
    let mut sequential = Vec::new();
    for (i, question) in questions().iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        alone.submit(greedy(question, 12 + 3 * i), tx);
        sequential.push(answer(rx).await);
    }
    // Concurrent: all ten at once into 8 slots (two wait, then join the running batch).
    let batched = backend(8, None);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_peak(batched.stats(), stop.clone());
    let mut pending = Vec::new();
    for (i, question) in questions().iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        batched.submit(greedy(question, 12 + 3 * i), tx);
        pending.push(tokio::spawn(answer(rx)));
    }
    let mut concurrent = Vec::new();
    for task in pending {
        concurrent.push(task.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let peak = peak.await.unwrap();
    for (i, (a, b)) in sequential.iter().zip(&concurrent).enumerate() {
        assert_eq!(
            a, b,
            "request {i}: batched answer differs from the sequential one"
        );
    }
    assert!(
        sequential.iter().any(|a| a.completion_tokens > 5),
        "the answers are long enough to overlap: {sequential:?}"
    );
    assert!(
        (2..=8).contains(&peak),
        "requests ran together, at most --max-seqs at once (peak {peak})"
    );
    let stats = batched.stats();
    assert_eq!(stats.kv_reserved_tokens.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_request_waits_for_kv_budget_and_one_that_never_fits_is_refused() {
    // Budget = one 640-token context; each request below reserves prompt + 400 positions.
    let backend = backend(8, Some(640));
    let (a_tx, a_rx) = mpsc::unbounded_channel();
    backend.submit(greedy("first", 400), a_tx);
    let (b_tx, mut b_rx) = mpsc::unbounded_channel();
    backend.submit(greedy("second", 400), b_tx);
    let stats = backend.stats();
    // B is not started while A holds the budget: it waits in the queue.
    let seen_waiting = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        if stats.running.load(Ordering::SeqCst) == 1 && stats.waiting.load(Ordering::SeqCst) == 1 {
            seen_waiting.fetch_add(1, Ordering::SeqCst);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        seen_waiting.load(Ordering::SeqCst),
        1,
        "B waited while A ran"
    );
    assert!(stats.kv_reserved_tokens.load(Ordering::SeqCst) <= 640);
    let a = answer(a_rx).await;
    assert!(a.completion_tokens > 0);
    assert!(
        matches!(b_rx.recv().await, Some(Event::Started { .. })),
        "B starts once A has given its KV memory back"
    );
    // n = 2 choices of 400 tokens can never fit in 640 positions: refused, naming the parameter.
    let (c_tx, mut c_rx) = mpsc::unbounded_channel();
    backend.submit(
        GenerationRequest {
            n: 2,
            ..greedy("third", 400)
        },
        c_tx,
    );
    match c_rx.recv().await {
        Some(Event::Failed(error)) => {
            assert_eq!(error.status.as_u16(), 400);
            assert_eq!(error.param.as_deref(), Some("n"), "{error:?}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn choices_of_one_request_are_sequences_of_the_batch() {
    // n = 3 greedy choices share one prefill and decode together: identical answers.
    let backend = backend(8, None);
    let (tx, mut rx) = mpsc::unbounded_channel();
    backend.submit(
        GenerationRequest {
            n: 3,
            ..greedy("hello", 10)
        },
        tx,
    );
    let mut texts: BTreeMap<usize, String> = BTreeMap::new();
    let mut finished = 0;
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text { index, text, .. } => texts.entry(index).or_default().push_str(&text),
            Event::Finished { .. } => finished += 1,
            Event::Failed(error) => panic!("{error:?}"),
            _ => {}
        }
    }
    assert_eq!(finished, 3);
    let texts: Vec<&String> = texts.values().collect();
    assert!(texts.windows(2).all(|w| w[0] == w[1]), "{texts:?}");
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_between_decode_steps() {
    // 4 tokens per step, one of them the running stream's: a ~130-token prompt takes 40+ steps
    // to prefill, each also a decode step of the running stream.
    let backend = support::sft_d2_backend(|spec| {
        spec.max_seqs = 2;
        spec.max_batched_tokens = 4;
    });
    let (tx, mut streaming) = mpsc::unbounded_channel();
    backend.submit(greedy("Tell me a story.", 400), tx);
    // Then a long prompt; what the first stream got before it was submitted does not count.
    let before = streaming.len();
    let (tx, mut long) = mpsc::unbounded_channel();
    backend.submit(greedy(&"why is the sky blue? ".repeat(12), 2), tx);
    // The scheduler sends events from one thread, in order: when the long request's `Started`
    // shows, every token the first stream got before it is already in its channel.
    let mut tokens_seen = 0;
    let during_prefill = loop {
        match long.try_recv() {
            Ok(Event::Started { .. }) => break tokens_seen + streaming.len() - before,
            Ok(Event::Failed(error)) => panic!("the long request failed: {error:?}"),
            Ok(_) => {}
            Err(mpsc::error::TryRecvError::Empty) => {}
            Err(mpsc::error::TryRecvError::Disconnected) => {
                panic!("the long request never started")
            }
        }
        while let Ok(event) = streaming.try_recv() {
            if let Event::Failed(error) = event {
                panic!("the first request failed: {error:?}");
            }
            tokens_seen += 1;
        }
        std::thread::yield_now();
    };
    // Measured: 35–40 with chunks of 4 between decode steps; 1–7 when the prompt is prefilled
    // in one go.
    assert!(
        during_prefill >= 20,
        "the running stream got {during_prefill} events while the long prompt was prefilled: \
         its decode steps should go on between the prompt's chunks"
    );
}
