//! Simulated models: answers with no weights, for testing apps against an OpenAI endpoint.
//! What the Go openai-api-simulator offered (word-bank text sized by `response_length`, fake
//! tool calls whose arguments follow the tool's schema, `json_schema` outputs), done right:
//! seeded and reproducible, with an echo mode, latency (time to first token, inter-token
//! latency with jitter) that is cancelled the moment the client leaves, and the same
//! validation, streaming, usage and errors as real models because it is just a [`Backend`].
//!
//! Its "tokens" are the pieces of [`text::split_pieces`]: words with their leading space, and
//! punctuation. `max_tokens`, `usage` and streaming chunks all count those.

pub mod schema_sample;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::api_error::ApiError;
use crate::backend::{
    new_tool_call_id, Backend, BackendStats, ChatMessage, Event, EventSender, FinishReason,
    GenerationRequest, OutputFormat, Prompt, Role, TokenLogprob, ToolCall, ToolChoice, TopLogprob,
};
use crate::stop::StopMatcher;
use text::{generate_text, split_pieces, ResponseLength};

/// The server-wide behaviour of simulated models (each request may override it).
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatorSettings {
    /// Answer with the last user message instead of generated text.
    pub echo: bool,
    pub ttft_ms: f64,
    pub itl_ms: f64,
    /// Standard deviation of the inter-token latency (normal, clipped at 0).
    pub itl_jitter_ms: f64,
    /// `None`: inferred from the conversation, as the Go simulator did.
    pub response_length: Option<ResponseLength>,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            echo: false,
            ttft_ms: 150.0,
            itl_ms: 20.0,
            itl_jitter_ms: 5.0,
            response_length: None,
        }
    }
}

pub struct SimulatedBackend {
    settings: SimulatorSettings,
    stats: Arc<BackendStats>,
}

impl SimulatedBackend {
    pub fn new(settings: SimulatorSettings) -> Self {
        Self {
            settings,
            stats: Arc::default(),
        }
    }
}

impl Backend for SimulatedBackend {
    fn submit(&self, request: GenerationRequest, events: EventSender) {
        let settings = self.settings.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let _running = stats.start();
            match plan(&settings, &request) {
                Ok(plan) => {
                    if play(plan, &request, &events).await.is_err() {
                        stats.cancel();
                    }
                }
                Err(error) => {
                    let _ = events.send(Event::Failed(error));
                }
            }
        });
    }

    fn stats(&self) -> Arc<BackendStats> {
        self.stats.clone()
    }
}

/// What one choice will say.
enum Answer {
    Pieces(Vec<String>),
    ToolCalls(Vec<ToolCall>),
}

struct Plan {
    prompt_tokens: usize,
    answers: Vec<Answer>,
    ttft: f64,
    itl: f64,
    jitter: f64,
}

fn plan(settings: &SimulatorSettings, request: &GenerationRequest) -> Result<Plan, ApiError> {
    let o = &request.simulation;
    let echo = o.echo.unwrap_or(settings.echo);
    let length = o
        .response_length
        .as_deref()
        .and_then(ResponseLength::parse)
        .or(settings.response_length);
    let (prompt_text, last_user, messages): (String, String, &[ChatMessage]) = match &request.prompt
    {
        Prompt::Chat(messages) => (
            messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(|m| m.content.clone())
                .unwrap_or_default(),
            messages,
        ),
        Prompt::Text(text) => (text.clone(), text.clone(), &[]),
        Prompt::Tokens(ids) => {
            let text = format!("{ids:?}");
            (text.clone(), text, &[])
        }
    };
    // A conversation whose last message is a tool result gets a text answer (the tool was used).
    let after_tool = messages.last().is_some_and(|m| m.role == Role::Tool);
    let wants_tools = !request.tools.is_empty()
        && match request.tool_choice {
            ToolChoice::None => false,
            ToolChoice::Auto => !after_tool,
            ToolChoice::Required | ToolChoice::Named(_) => true,
        };
    let mut answers = Vec::with_capacity(request.n);
    for index in 0..request.n {
        let mut rng = StdRng::seed_from_u64(request.seed.wrapping_add(index as u64));
        let answer = if wants_tools {
            Answer::ToolCalls(tool_calls(request, &mut rng)?)
        } else {
            match &request.output {
                OutputFormat::JsonSchema(schema) => {
                    Answer::Pieces(json_pieces(&sample(schema, &mut rng, "response_format")?))
                }
                OutputFormat::JsonObject => Answer::Pieces(json_pieces(&sample(
                    &serde_json::json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}),
                    &mut rng,
                    "response_format",
                )?)),
                OutputFormat::Text if echo => Answer::Pieces(split_pieces(&last_user)),
                OutputFormat::Text => {
                    let average = if messages.is_empty() {
                        prompt_text.chars().count() as f64
                    } else {
                        messages
                            .iter()
                            .map(|m| m.content.chars().count())
                            .sum::<usize>() as f64
                            / messages.len() as f64
                    };
                    let length = length.unwrap_or_else(|| ResponseLength::infer(average, &mut rng));
                    let target = length.target_chars(&mut rng);
                    Answer::Pieces(generate_text(&mut rng, target))
                }
            }
        };
        answers.push(answer);
    }
    Ok(Plan {
        prompt_tokens: split_pieces(&prompt_text).len().max(1),
        answers,
        ttft: o.ttft_ms.unwrap_or(settings.ttft_ms),
        itl: o.itl_ms.unwrap_or(settings.itl_ms),
        jitter: o.itl_jitter_ms.unwrap_or(settings.itl_jitter_ms),
    })
}

fn sample(schema: &Value, rng: &mut StdRng, param: &str) -> Result<Value, ApiError> {
    schema_sample::sample_value(schema, rng).map_err(|e| {
        ApiError::invalid_request(
            format!("the simulator cannot satisfy this schema: {e}"),
            Some(param),
        )
    })
}

/// Compact JSON cut into pieces of a few characters, streamed like tokens.
fn json_pieces(value: &Value) -> Vec<String> {
    let text = value.to_string();
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

fn tool_calls(request: &GenerationRequest, rng: &mut StdRng) -> Result<Vec<ToolCall>, ApiError> {
    let tools: Vec<_> = match &request.tool_choice {
        ToolChoice::Named(name) => request.tools.iter().filter(|t| &t.name == name).collect(),
        _ if request.parallel_tool_calls && request.tools.len() > 1 => {
            let count = rng.random_range(1..=request.tools.len().min(3));
            let mut picked: Vec<_> = request.tools.iter().collect();
            for i in 0..count {
                let j = rng.random_range(i..picked.len());
                picked.swap(i, j);
            }
            picked.truncate(count);
            picked
        }
        _ => vec![&request.tools[rng.random_range(0..request.tools.len())]],
    };
    tools
        .into_iter()
        .map(|tool| {
            let arguments = sample(&tool.parameters, rng, "tools")?;
            Ok(ToolCall {
                id: new_tool_call_id(rng),
                name: tool.name.clone(),
                arguments: arguments.to_string(),
            })
        })
        .collect()
}

/// Waits `ms`, or returns `false` at once if the client goes away meanwhile.
async fn pause(events: &EventSender, ms: f64) -> bool {
    if ms <= 0.0 {
        return !events.is_closed();
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)) => true,
        _ = events.closed() => false,
    }
}

/// The client went away before the answer was complete.
struct Cancelled;

/// Emits the plan with its latencies: every choice advances one piece per step.
async fn play(
    plan: Plan,
    request: &GenerationRequest,
    events: &EventSender,
) -> Result<(), Cancelled> {
    let mut rng = StdRng::seed_from_u64(request.seed ^ 0x5eed);
    if events
        .send(Event::Started {
            prompt_tokens: plan.prompt_tokens,
        })
        .is_err()
        || !pause(events, plan.ttft).await
    {
        return Err(Cancelled);
    }
    let budget = request.max_tokens.unwrap_or(usize::MAX);
    let mut streams: Vec<(std::vec::IntoIter<String>, StopMatcher, usize, bool)> = Vec::new();
    for (index, answer) in plan.answers.into_iter().enumerate() {
        match answer {
            Answer::ToolCalls(calls) => {
                let tokens = calls
                    .iter()
                    .map(|c| split_pieces(&c.arguments).len() + 1)
                    .sum();
                for call in calls {
                    if events.send(Event::ToolCall { index, call }).is_err() {
                        return Err(Cancelled);
                    }
                }
                let finished = Event::Finished {
                    index,
                    reason: FinishReason::ToolCalls,
                    completion_tokens: tokens,
                };
                if events.send(finished).is_err() {
                    return Err(Cancelled);
                }
                streams.push((Vec::new().into_iter(), StopMatcher::default(), 0, true));
            }
            Answer::Pieces(pieces) => {
                let stops = if request.output == OutputFormat::Text {
                    request.stop.clone()
                } else {
                    Vec::new()
                };
                streams.push((pieces.into_iter(), StopMatcher::new(&stops), 0, false));
            }
        }
    }
    let mut first = true;
    while streams.iter().any(|s| !s.3) {
        if !first {
            let delay = plan.itl + plan.jitter * standard_normal(&mut rng);
            if !pause(events, delay.max(0.0)).await {
                return Err(Cancelled);
            }
        }
        first = false;
        for (index, (pieces, stop, used, done)) in streams.iter_mut().enumerate() {
            if *done {
                continue;
            }
            let mut logprobs = Vec::new();
            let (text, reason) = match pieces.next() {
                None => (stop.finish(), Some(FinishReason::Stop)),
                Some(_) if *used >= budget => (stop.finish(), Some(FinishReason::Length)),
                Some(piece) => {
                    *used += 1;
                    if let Some(top) = request.logprobs {
                        logprobs.push(fake_logprob(&piece, top, &mut rng));
                    }
                    let (text, stopped) = stop.push(&piece);
                    (text, stopped.then_some(FinishReason::Stop))
                }
            };
            if (!text.is_empty() || !logprobs.is_empty())
                && events
                    .send(Event::Text {
                        index,
                        text,
                        logprobs,
                    })
                    .is_err()
            {
                return Err(Cancelled);
            }
            if let Some(reason) = reason {
                *done = true;
                if events
                    .send(Event::Finished {
                        index,
                        reason,
                        completion_tokens: *used,
                    })
                    .is_err()
                {
                    return Err(Cancelled);
                }
            }
        }
    }
    Ok(())
}

/// A plausible log-probability for a simulated token, the token itself first among `top`
/// alternatives of decreasing probability.
fn fake_logprob(piece: &str, top: usize, rng: &mut StdRng) -> TokenLogprob {
    let logprob = -rng.random_range(0.0..0.7f32);
    let mut alternatives = vec![TopLogprob {
        token: piece.to_string(),
        bytes: piece.as_bytes().to_vec(),
        logprob,
    }];
    let mut next = logprob;
    for word in [
        " the", " a", ",", " and", " of", " to", ".", " in", " is", " it", " that", " for", " on",
        " with", " as", " was", " at", " by", " this", " we", " you",
    ]
    .iter()
    .filter(|w| **w != piece)
    .take(top.saturating_sub(1))
    {
        next -= rng.random_range(0.5..2.0f32);
        alternatives.push(TopLogprob {
            token: word.to_string(),
            bytes: word.as_bytes().to_vec(),
            logprob: next,
        });
    }
    alternatives.truncate(top);
    TokenLogprob {
        token: piece.to_string(),
        bytes: piece.as_bytes().to_vec(),
        logprob,
        top: alternatives,
    }
}

/// A standard normal draw (Box–Muller), for latency jitter.
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
