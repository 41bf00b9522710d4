//! From a client's body to a [`GenerationRequest`]: every range check, with a 400 whose
//! `param` names the offending field (`temperature`, `messages[2].content[0]`, …). Limits on
//! message counts and sizes are nanochat's chat_web defaults (500 messages, 8000 characters per
//! message, 32000 in all), configurable on the command line.

use nanochat_engine::SamplingParams;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::backend::{
    ChatMessage, GenerationRequest, OutputFormat, Prompt, Role, SimulationOverrides, ToolCall,
    ToolChoice, ToolSpec,
};
use crate::openai_types::{
    ChatCompletionRequest, CommonFields, CompletionRequest, ContentField, Extensions, PromptField,
    ResponseFormatField, StopField, StreamOptions, ToolChoiceField, WireMessage, WireTool,
};

/// Size limits on what a request may contain.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    pub max_messages: usize,
    /// Characters (code points, as Python's `len`) per message.
    pub max_message_chars: usize,
    pub max_total_chars: usize,
    pub max_n: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_messages: 500,
            max_message_chars: 8000,
            max_total_chars: 32000,
            max_n: 16,
        }
    }
}

type Result<T> = std::result::Result<T, ApiError>;

/// Validates a chat completion body. `seed` is used when the body has none.
pub fn chat_request(
    body: ChatCompletionRequest,
    limits: &RequestLimits,
    seed: u64,
) -> Result<GenerationRequest> {
    let messages = messages(&body.messages, limits)?;
    let max_tokens = positive("max_completion_tokens", body.max_completion_tokens)?
        .or(positive("max_tokens", body.max_tokens)?);
    let top_logprobs = match (body.logprobs, body.top_logprobs) {
        (_, Some(k)) if !(0..=20).contains(&k) => {
            return Err(ApiError::invalid_value(
                "top_logprobs",
                format!("top_logprobs must be between 0 and 20, got {k}"),
            ))
        }
        (Some(true), k) => Some(k.unwrap_or(0) as usize),
        (_, Some(_)) => {
            return Err(ApiError::invalid_request(
                "top_logprobs requires logprobs to be true",
                Some("top_logprobs"),
            ))
        }
        _ => None,
    };
    let tools = tools(body.tools.as_deref().unwrap_or(&[]))?;
    let tool_choice = tool_choice(body.tool_choice.as_ref(), &tools)?;
    let common = common(body.common, limits, seed)?;
    Ok(GenerationRequest {
        model: body.model,
        prompt: Prompt::Chat(messages),
        max_tokens,
        clamp_max_tokens: false,
        n: common.n,
        sampling: common.sampling,
        seed: common.seed,
        stop: common.stop,
        logprobs: top_logprobs,
        output: response_format(body.response_format.as_ref())?,
        tools,
        tool_choice,
        parallel_tool_calls: body.parallel_tool_calls.unwrap_or(true),
        simulation: common.simulation,
    })
}

/// Validates a legacy completion body.
pub fn completion_request(
    body: CompletionRequest,
    limits: &RequestLimits,
    seed: u64,
) -> Result<GenerationRequest> {
    let prompt = match body.prompt {
        None => Prompt::Text(String::new()),
        Some(PromptField::Text(text)) => Prompt::Text(text),
        Some(PromptField::Texts(texts)) => match <[String; 1]>::try_from(texts) {
            Ok([text]) => Prompt::Text(text),
            Err(_) => return Err(batch_prompt()),
        },
        Some(PromptField::Tokens(ids)) => Prompt::Tokens(token_ids(&ids)?),
        Some(PromptField::TokenLists(lists)) => match <[Vec<i64>; 1]>::try_from(lists) {
            Ok([ids]) => Prompt::Tokens(token_ids(&ids)?),
            Err(_) => return Err(batch_prompt()),
        },
    };
    if let Prompt::Text(text) = &prompt {
        if text.chars().count() > limits.max_total_chars {
            return Err(ApiError::invalid_request(
                format!(
                    "prompt is longer than {} characters",
                    limits.max_total_chars
                ),
                Some("prompt"),
            ));
        }
    }
    let logprobs = match body.logprobs {
        Some(k) if !(0..=5).contains(&k) => {
            return Err(ApiError::invalid_value(
                "logprobs",
                format!("logprobs must be between 0 and 5, got {k}"),
            ))
        }
        k => k.map(|k| k as usize),
    };
    let common = common(body.common, limits, seed)?;
    Ok(GenerationRequest {
        model: body.model,
        prompt,
        // The legacy endpoint's default is 16 tokens.
        max_tokens: Some(positive("max_tokens", body.max_tokens)?.unwrap_or(16)),
        clamp_max_tokens: false,
        n: common.n,
        sampling: common.sampling,
        seed: common.seed,
        stop: common.stop,
        logprobs,
        output: OutputFormat::Text,
        tools: Vec::new(),
        tool_choice: ToolChoice::None,
        parallel_tool_calls: false,
        simulation: common.simulation,
    })
}

fn batch_prompt() -> ApiError {
    ApiError::invalid_request(
        "only one prompt per request is supported; send several requests (or use n for several completions)",
        Some("prompt"),
    )
}

fn token_ids(ids: &[i64]) -> Result<Vec<u32>> {
    ids.iter()
        .map(|&id| {
            u32::try_from(id).map_err(|_| {
                ApiError::invalid_value("prompt", format!("token id {id} is not a valid token id"))
            })
        })
        .collect()
}

fn messages(wire: &[WireMessage], limits: &RequestLimits) -> Result<Vec<ChatMessage>> {
    if wire.is_empty() {
        return Err(ApiError::invalid_request(
            "messages must contain at least one message",
            Some("messages"),
        ));
    }
    if wire.len() > limits.max_messages {
        return Err(ApiError::invalid_request(
            format!(
                "too many messages: {} (this server accepts at most {})",
                wire.len(),
                limits.max_messages
            ),
            Some("messages"),
        ));
    }
    let mut total = 0;
    let mut out = Vec::with_capacity(wire.len());
    for (i, message) in wire.iter().enumerate() {
        let role = match message.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            other => {
                return Err(ApiError::invalid_value(
                    &format!("messages[{i}].role"),
                    format!(
                    "unknown role {other:?}: expected system, developer, user, assistant or tool"
                ),
                ))
            }
        };
        let content = match &message.content {
            None => String::new(),
            Some(ContentField::Text(text)) => text.clone(),
            Some(ContentField::Parts(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.iter().enumerate() {
                    match (part.kind.as_str(), &part.text, &part.refusal) {
                        ("text" | "input_text" | "output_text", Some(t), _) => text.push_str(t),
                        ("refusal", _, Some(t)) => text.push_str(t),
                        (kind, _, _) => {
                            return Err(ApiError::invalid_value(
                                &format!("messages[{i}].content[{j}]"),
                                format!("content parts of type {kind:?} are not supported: nanochat models read text only"),
                            ))
                        }
                    }
                }
                text
            }
        };
        let tool_calls = message
            .tool_calls
            .iter()
            .flatten()
            .map(|call| ToolCall {
                id: call.id.clone().unwrap_or_default(),
                name: call.function.name.clone(),
                arguments: match &call.function.arguments {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            })
            .collect::<Vec<_>>();
        if content.is_empty() && tool_calls.is_empty() && role != Role::Assistant {
            return Err(ApiError::invalid_value(
                &format!("messages[{i}].content"),
                format!("message {i} has empty content"),
            ));
        }
        let chars = content.chars().count();
        if chars > limits.max_message_chars {
            return Err(ApiError::invalid_value(
                &format!("messages[{i}].content"),
                format!(
                    "message {i} is too long: {chars} characters (at most {})",
                    limits.max_message_chars
                ),
            ));
        }
        total += chars;
        out.push(ChatMessage {
            role,
            content,
            tool_calls,
            tool_call_id: message.tool_call_id.clone(),
            name: message.name.clone(),
        });
    }
    if total > limits.max_total_chars {
        return Err(ApiError::invalid_request(
            format!(
                "the conversation is too long: {total} characters (at most {})",
                limits.max_total_chars
            ),
            Some("messages"),
        ));
    }
    Ok(out)
}

fn positive(name: &str, value: Option<i64>) -> Result<Option<usize>> {
    match value {
        Some(v) if v < 1 => Err(ApiError::invalid_value(
            name,
            format!("{name} must be at least 1, got {v}"),
        )),
        Some(v) => Ok(Some(v as usize)),
        None => Ok(None),
    }
}

fn choices(name: &str, n: Option<i64>, limits: &RequestLimits) -> Result<usize> {
    match n {
        None => Ok(1),
        Some(n) if n >= 1 && n as usize <= limits.max_n => Ok(n as usize),
        Some(n) => Err(ApiError::invalid_value(
            name,
            format!("{name} must be between 1 and {}, got {n}", limits.max_n),
        )),
    }
}

fn in_range(name: &str, value: Option<f64>, lo: f64, hi: f64) -> Result<Option<f32>> {
    match value {
        Some(v) if !(v.is_finite() && (lo..=hi).contains(&v)) => Err(ApiError::invalid_value(
            name,
            format!("{name} must be between {lo} and {hi}, got {v}"),
        )),
        v => Ok(v.map(|v| v as f32)),
    }
}

/// The validated fields chat and legacy completions share.
struct Common {
    n: usize,
    sampling: SamplingParams,
    seed: u64,
    stop: Vec<String>,
    simulation: SimulationOverrides,
}

fn common(c: CommonFields, limits: &RequestLimits, seed: u64) -> Result<Common> {
    Ok(Common {
        n: choices("n", c.n, limits)?,
        sampling: sampling(
            c.temperature,
            c.top_p,
            c.presence_penalty,
            c.frequency_penalty,
            c.logit_bias.as_ref(),
            &c.extensions,
        )?,
        seed: c.seed.map_or(seed, |s| s as u64),
        stop: stop(c.stop)?,
        simulation: simulation(&c.extensions, c.stream_options.as_ref())?,
    })
}

fn sampling(
    temperature: Option<f64>,
    top_p: Option<f64>,
    presence: Option<f64>,
    frequency: Option<f64>,
    logit_bias: Option<&std::collections::BTreeMap<String, f64>>,
    ext: &Extensions,
) -> Result<SamplingParams> {
    let top_p = in_range("top_p", top_p, 0.0, 1.0)?;
    let top_k = match ext.top_k {
        Some(k) if k < 1 => {
            return Err(ApiError::invalid_value(
                "top_k",
                format!("top_k must be at least 1, got {k}"),
            ))
        }
        k => k.map(|k| k as usize),
    };
    let repetition_penalty = match ext.repetition_penalty {
        Some(r) if !(r.is_finite() && r > 0.0) => {
            return Err(ApiError::invalid_value(
                "repetition_penalty",
                format!("repetition_penalty must be > 0, got {r}"),
            ))
        }
        r => r.unwrap_or(1.0) as f32,
    };
    let mut bias = Vec::new();
    for (key, &value) in logit_bias.into_iter().flatten() {
        let token = key.parse::<u32>().map_err(|_| {
            ApiError::invalid_value(
                "logit_bias",
                format!("logit_bias keys must be token ids, got {key:?}"),
            )
        })?;
        let value = in_range("logit_bias", Some(value), -100.0, 100.0)?.unwrap_or(0.0);
        bias.push((token, value));
    }
    Ok(SamplingParams {
        // OpenAI's default temperature is 1.
        temperature: in_range("temperature", temperature, 0.0, 2.0)?.unwrap_or(1.0),
        top_k,
        // top_p = 1 keeps everything: no need to sort for it.
        top_p: top_p.filter(|&p| p < 1.0).map(|p| p.max(f32::MIN_POSITIVE)),
        min_p: in_range("min_p", ext.min_p, 0.0, 1.0)?,
        presence_penalty: in_range("presence_penalty", presence, -2.0, 2.0)?.unwrap_or(0.0),
        frequency_penalty: in_range("frequency_penalty", frequency, -2.0, 2.0)?.unwrap_or(0.0),
        repetition_penalty,
        logit_bias: bias,
    })
}

fn stop(stop: Option<StopField>) -> Result<Vec<String>> {
    let stops = match stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    };
    if stops.len() > 4 {
        return Err(ApiError::invalid_value(
            "stop",
            format!("stop accepts at most 4 sequences, got {}", stops.len()),
        ));
    }
    Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
}

fn response_format(format: Option<&ResponseFormatField>) -> Result<OutputFormat> {
    let Some(format) = format else {
        return Ok(OutputFormat::Text);
    };
    match format.kind.as_str() {
        "text" => Ok(OutputFormat::Text),
        "json_object" => Ok(OutputFormat::JsonObject),
        "json_schema" => {
            let spec = format.json_schema.as_ref().ok_or_else(|| {
                ApiError::invalid_request(
                    "response_format json_schema needs a json_schema object",
                    Some("response_format.json_schema"),
                )
            })?;
            // OpenAI wraps the schema ({name, schema, strict}); the Go simulator did not.
            let schema = match spec.get("schema") {
                Some(schema) => schema.clone(),
                None if spec.get("type").is_some() || spec.get("properties").is_some() => {
                    spec.clone()
                }
                None => json!({"type": "object"}),
            };
            if !(schema.is_object() || schema.is_boolean()) {
                return Err(ApiError::invalid_value(
                    "response_format.json_schema.schema",
                    "the schema must be a JSON object",
                ));
            }
            Ok(OutputFormat::JsonSchema(schema))
        }
        other => Err(ApiError::invalid_value(
            "response_format.type",
            format!(
                "unknown response_format type {other:?}: expected text, json_object or json_schema"
            ),
        )),
    }
}

fn tools(wire: &[WireTool]) -> Result<Vec<ToolSpec>> {
    wire.iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.kind.as_deref().is_some_and(|k| k != "function") {
                return Err(ApiError::invalid_value(
                    &format!("tools[{i}].type"),
                    "only tools of type \"function\" are supported",
                ));
            }
            let function = tool.function.as_ref().ok_or_else(|| {
                ApiError::invalid_request(
                    format!("tools[{i}] has no function"),
                    Some(&format!("tools[{i}].function")),
                )
            })?;
            if function.name.is_empty() {
                return Err(ApiError::invalid_value(
                    &format!("tools[{i}].function.name"),
                    "a tool needs a name",
                ));
            }
            let parameters = function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            if !parameters.is_object() {
                return Err(ApiError::invalid_value(
                    &format!("tools[{i}].function.parameters"),
                    "parameters must be a JSON Schema object",
                ));
            }
            Ok(ToolSpec {
                name: function.name.clone(),
                description: function.description.clone(),
                parameters,
            })
        })
        .collect()
}

fn tool_choice(choice: Option<&ToolChoiceField>, tools: &[ToolSpec]) -> Result<ToolChoice> {
    let choice = match choice {
        None if tools.is_empty() => ToolChoice::None,
        None => ToolChoice::Auto,
        Some(ToolChoiceField::Mode(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid_value(
                    "tool_choice",
                    format!(
                    "unknown tool_choice {other:?}: expected none, auto, required or a function"
                ),
                ))
            }
        },
        Some(ToolChoiceField::Named { function }) => {
            if !tools.iter().any(|t| t.name == function.name) {
                return Err(ApiError::invalid_value(
                    "tool_choice",
                    format!(
                        "tool_choice names {:?}, which is not in tools",
                        function.name
                    ),
                ));
            }
            ToolChoice::Named(function.name.clone())
        }
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required) {
        return Err(ApiError::invalid_value(
            "tool_choice",
            "tool_choice \"required\" needs tools",
        ));
    }
    Ok(choice)
}

fn simulation(
    ext: &Extensions,
    stream_options: Option<&StreamOptions>,
) -> Result<SimulationOverrides> {
    let millis =
        |name: &str, v: Option<f64>| in_range(name, v, 0.0, 600_000.0).map(|v| v.map(f64::from));
    let echo = match ext.sim_mode.as_deref() {
        None => None,
        Some("echo") => Some(true),
        Some("random") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid_value(
                "sim_mode",
                format!("sim_mode must be random or echo, got {other:?}"),
            ))
        }
    };
    if let Some(length) = &ext.response_length {
        if !matches!(
            length.to_ascii_lowercase().as_str(),
            "short" | "medium" | "long"
        ) {
            return Err(ApiError::invalid_value(
                "response_length",
                format!("response_length must be short, medium or long, got {length:?}"),
            ));
        }
    }
    let mut itl_ms = millis("itl_ms", ext.itl_ms)?;
    let mut itl_jitter_ms = millis("itl_jitter_ms", ext.itl_jitter_ms)?;
    let tps = ext
        .tokens_per_second
        .or(stream_options.and_then(|o| o.tokens_per_second));
    if let Some(tps) = tps {
        if !(tps.is_finite() && tps > 0.0) {
            return Err(ApiError::invalid_value(
                "tokens_per_second",
                format!("tokens_per_second must be > 0, got {tps}"),
            ));
        }
        itl_ms = Some(1000.0 / tps);
    }
    // The Go simulator's per-chunk uniform delay: its midpoint and half-width.
    if let Some(options) = stream_options {
        if let (Some(lo), Some(hi)) = (options.delay_min_ms, options.delay_max_ms) {
            let lo = millis("stream_options.delay_min_ms", Some(lo))?.unwrap_or(0.0);
            let hi = millis("stream_options.delay_max_ms", Some(hi))?
                .unwrap_or(0.0)
                .max(lo);
            itl_ms = Some((lo + hi) / 2.0);
            itl_jitter_ms = Some((hi - lo) / 2.0);
        }
    }
    Ok(SimulationOverrides {
        echo,
        response_length: ext.response_length.clone(),
        ttft_ms: millis("ttft_ms", ext.ttft_ms)?,
        itl_ms,
        itl_jitter_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<GenerationRequest> {
        chat_request(
            serde_json::from_value(body).unwrap(),
            &RequestLimits::default(),
            0,
        )
    }

    #[test]
    fn parts_unknown_fields_and_aliases_are_accepted() {
        let r = chat(json!({
            "model": "m", "store": true, "metadata": {"a": 1}, "service_tier": "auto",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
            "max_completion_tokens": 7, "stream_options": {"include_usage": true},
            "stop": "x", "top_k": 5, "seed": 3
        }))
        .unwrap();
        let Prompt::Chat(m) = &r.prompt else { panic!() };
        assert_eq!((m[0].role, m[1].content.as_str()), (Role::System, "ab"));
        assert_eq!(
            (r.max_tokens, r.stop.clone(), r.sampling.top_k, r.seed),
            (Some(7), vec!["x".to_string()], Some(5), 3)
        );
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let base = |extra: Value| {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            chat(body).unwrap_err()
        };
        assert_eq!(
            base(json!({"temperature": 5})).param.as_deref(),
            Some("temperature")
        );
        assert_eq!(base(json!({"n": 0})).param.as_deref(), Some("n"));
        assert_eq!(
            base(json!({"stop": ["a", "b", "c", "d", "e"]}))
                .param
                .as_deref(),
            Some("stop")
        );
        assert_eq!(
            base(json!({"top_logprobs": 3})).param.as_deref(),
            Some("top_logprobs")
        );
        assert_eq!(
            base(json!({"tool_choice": "required"})).param.as_deref(),
            Some("tool_choice")
        );
        assert_eq!(
            base(json!({"logit_bias": {"x": 1}})).param.as_deref(),
            Some("logit_bias")
        );
        let image = chat(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
        );
        assert_eq!(
            image.unwrap_err().param.as_deref(),
            Some("messages[0].content[0]")
        );
        let role = chat(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}));
        assert_eq!(role.unwrap_err().param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn schemas_wrapped_or_bare_and_tool_choice() {
        let r = chat(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer"}}},
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}
        }))
        .unwrap();
        assert_eq!(
            r.output,
            OutputFormat::JsonSchema(json!({"type": "integer"}))
        );
        assert_eq!(r.tool_choice, ToolChoice::Named("f".into()));
        let bare = chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"type": "object", "properties": {}}}})).unwrap();
        assert!(matches!(bare.output, OutputFormat::JsonSchema(_)));
    }
}
