//! One choice's output on its way to the client: UTF-8-safe text ([`TextStream`]), stop
//! sequences, log-probabilities held until their text is sent, and tool-call detection (text is
//! held back while it may still be a JSON tool call).

use nanochat_engine::TextStream;
use nanochat_tokenizer::Tokenizer;

use crate::api_error::ApiError;
use crate::backend::{
    new_tool_call_id, Event, EventSender, FinishReason, GenerationRequest, OutputFormat,
    TokenLogprob, ToolCall, ToolSpec,
};
use crate::chat_prompt::{may_be_tool_call, parse_tool_calls};
use crate::stop::StopMatcher;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputMode {
    Text,
    /// `tool_choice: auto`: hold text back while it may still be a JSON tool call.
    MaybeTool,
    /// The reply is a tool call (grammar-constrained); nothing is streamed as text.
    ForcedTool,
}

/// One choice's output on its way to events.
pub(crate) struct ChoiceOutput {
    index: usize,
    mode: OutputMode,
    text: TextStream,
    stop: StopMatcher,
    /// Text held back while it may be a tool call.
    held: String,
    pending_logprobs: Vec<TokenLogprob>,
    completion_tokens: usize,
    pub(crate) finished: bool,
}

impl ChoiceOutput {
    pub(crate) fn new(index: usize, mode: OutputMode, request: &GenerationRequest) -> Self {
        // Stop sequences would cut a JSON document in half: they apply to free text only.
        let stops = if mode == OutputMode::ForcedTool || request.output != OutputFormat::Text {
            Vec::new()
        } else {
            request.stop.clone()
        };
        Self {
            index,
            mode,
            text: TextStream::new(),
            stop: StopMatcher::new(&stops),
            held: String::new(),
            pending_logprobs: Vec::new(),
            completion_tokens: 0,
            finished: false,
        }
    }

    /// Takes a generated token; `Ok(true)` when a stop sequence completed.
    pub(crate) fn push_token(
        &mut self,
        token: u32,
        logprobs: Option<TokenLogprob>,
        tokenizer: &Tokenizer,
        events: &EventSender,
    ) -> Result<bool, ApiError> {
        self.completion_tokens += 1;
        self.pending_logprobs.extend(logprobs);
        let piece = self.text.push(tokenizer, token).map_err(internal)?;
        let (text, stopped) = self.stop.push(&piece);
        self.emit(text, events)?;
        Ok(stopped)
    }

    fn emit(&mut self, text: String, events: &EventSender) -> Result<(), ApiError> {
        match self.mode {
            OutputMode::ForcedTool => {
                self.held.push_str(&text);
                return Ok(());
            }
            OutputMode::MaybeTool => {
                self.held.push_str(&text);
                if may_be_tool_call(&self.held) {
                    return Ok(());
                }
                self.mode = OutputMode::Text;
                let held = std::mem::take(&mut self.held);
                return self.emit(held, events);
            }
            OutputMode::Text => {}
        }
        if text.is_empty() {
            return Ok(());
        }
        let logprobs = std::mem::take(&mut self.pending_logprobs);
        // a closed channel is noticed by the generate loop
        send(
            events,
            Event::Text {
                index: self.index,
                text,
                logprobs,
            },
        );
        Ok(())
    }

    pub(crate) fn finish(
        &mut self,
        mut reason: FinishReason,
        tools: &[ToolSpec],
        events: &EventSender,
    ) -> Result<(), ApiError> {
        self.finished = true;
        let rest = self.stop.finish();
        if self.mode == OutputMode::Text {
            self.emit(rest, events)?;
        } else {
            self.held.push_str(&rest);
            let calls = parse_tool_calls(&self.held, tools);
            match calls {
                Some(calls) if reason == FinishReason::Stop => {
                    let mut rng = rand::rng();
                    for (name, arguments) in calls {
                        let call = ToolCall {
                            id: new_tool_call_id(&mut rng),
                            name,
                            arguments,
                        };
                        send(
                            events,
                            Event::ToolCall {
                                index: self.index,
                                call,
                            },
                        );
                    }
                    reason = FinishReason::ToolCalls;
                }
                _ => {
                    self.mode = OutputMode::Text;
                    let held = std::mem::take(&mut self.held);
                    self.emit(held, events)?;
                }
            }
        }
        if !self.pending_logprobs.is_empty() {
            let logprobs = std::mem::take(&mut self.pending_logprobs);
            send(
                events,
                Event::Text {
                    index: self.index,
                    text: String::new(),
                    logprobs,
                },
            );
        }
        send(
            events,
            Event::Finished {
                index: self.index,
                reason,
                completion_tokens: self.completion_tokens,
            },
        );
        Ok(())
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error.to_string())
}

/// Sends to the client; a closed channel is noticed by the scheduler, which drops the request.
fn send(events: &EventSender, event: Event) {
    let _ = events.send(event);
}
