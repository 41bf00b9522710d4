//! OpenAI messages → nanochat's chat format (reference §4), and tool calls in and out.
//!
//! nanochat knows two roles and no system token, so:
//! - `system`/`developer` messages (and the tool descriptions) are merged into the first user
//!   message with `"\n\n"`, as nanochat's `render_conversation` does;
//! - a `tool` message becomes user text (`Tool result (name): …`), an assistant's `tool_calls`
//!   become assistant text in the same JSON form the model is asked to write;
//! - consecutive turns of one role are merged with `"\n\n"` (nanochat requires alternation);
//! - a final assistant message is a prefix the model continues (no `<|assistant_end|>`).
//!
//! Message text is encoded as ordinary text: a literal `<|assistant_end|>` typed by a user is a
//! handful of ordinary tokens, never the control token.
//!
//! Tool calls: the model is told to answer with only `{"name": …, "arguments": {…}}` (or an
//! array of them). With `tool_choice` `required` or a named function the output is forced into
//! that shape by a JSON-schema constraint ([`tool_call_schema`]); with `auto` a reply that
//! parses as a call to a known tool ([`parse_tool_calls`]) becomes `tool_calls`.

use nanochat_tokenizer::{SpecialIds, Tokenizer};
use serde_json::{json, Value};

use crate::backend::{ChatMessage, Role, ToolChoice, ToolSpec};

/// A turn after merging: `true` = user.
struct Turn {
    user: bool,
    text: String,
}

/// Token ids of the prompt, ending with `<|assistant_start|>` (plus the prefix the model is to
/// continue, when the last message is the assistant's).
pub fn render_chat(
    tokenizer: &Tokenizer,
    specials: SpecialIds,
    messages: &[ChatMessage],
    tools: &[ToolSpec],
    tool_choice: &ToolChoice,
) -> nanochat_tokenizer::Result<Vec<u32>> {
    let mut system: Vec<String> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.clone())
        .collect();
    if !tools.is_empty() && *tool_choice != ToolChoice::None {
        system.push(tool_instructions(tools, tool_choice));
    }
    let mut turns: Vec<Turn> = Vec::new();
    for message in messages {
        let (user, text) = match message.role {
            Role::System => continue,
            Role::User => (true, message.content.clone()),
            Role::Tool => {
                let name = message
                    .name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                (true, format!("Tool result{name}: {}", message.content))
            }
            Role::Assistant => {
                let mut text = message.content.clone();
                if !message.tool_calls.is_empty() {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&render_tool_calls(&message.tool_calls));
                }
                (false, text)
            }
        };
        match turns.last_mut() {
            Some(last) if last.user == user => {
                last.text.push_str("\n\n");
                last.text.push_str(&text);
            }
            _ => turns.push(Turn { user, text }),
        }
    }
    if !system.is_empty() {
        let system = system.join("\n\n");
        match turns.iter_mut().find(|t| t.user) {
            Some(first_user) => first_user.text = format!("{system}\n\n{}", first_user.text),
            None => turns.insert(
                0,
                Turn {
                    user: true,
                    text: system,
                },
            ),
        }
    }
    let mut ids = vec![specials.bos];
    let last = turns.len().saturating_sub(1);
    for (i, turn) in turns.iter().enumerate() {
        if turn.user {
            ids.push(specials.user_start);
            tokenizer.encode_into(&turn.text, &mut ids)?;
            ids.push(specials.user_end);
        } else {
            ids.push(specials.assistant_start);
            tokenizer.encode_into(&turn.text, &mut ids)?;
            if i != last {
                ids.push(specials.assistant_end);
            }
        }
    }
    if turns.last().is_none_or(|t| t.user) {
        ids.push(specials.assistant_start);
    }
    Ok(ids)
}

fn tool_instructions(tools: &[ToolSpec], choice: &ToolChoice) -> String {
    let mut text = String::from(
        "You can call tools. To call one, answer with only a JSON object {\"name\": <tool name>, \
         \"arguments\": <arguments object>}",
    );
    text.push_str(match choice {
        ToolChoice::Auto => "; otherwise answer normally.",
        _ => ".",
    });
    if let ToolChoice::Named(name) = choice {
        text.push_str(&format!(" Call the tool {name}."));
    }
    text.push_str("\nTools:");
    for tool in tools {
        text.push_str(&format!("\n- {}", tool.name));
        if let Some(description) = &tool.description {
            text.push_str(&format!(": {description}"));
        }
        text.push_str(&format!(" Arguments schema: {}", tool.parameters));
    }
    text
}

fn render_tool_calls(calls: &[crate::backend::ToolCall]) -> String {
    let as_json = |call: &crate::backend::ToolCall| {
        let arguments: Value =
            serde_json::from_str(&call.arguments).unwrap_or(Value::String(call.arguments.clone()));
        json!({"name": call.name, "arguments": arguments})
    };
    match calls {
        [one] => as_json(one).to_string(),
        many => Value::Array(many.iter().map(as_json).collect()).to_string(),
    }
}

/// The JSON schema a forced tool call must follow: one `{"name", "arguments"}` object for the
/// named tool, or for any tool when the choice is `required`.
pub fn tool_call_schema(tools: &[ToolSpec], choice: &ToolChoice) -> Option<Value> {
    let one = |tool: &ToolSpec| {
        json!({
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": false
        })
    };
    match choice {
        ToolChoice::Named(name) => tools.iter().find(|t| &t.name == name).map(one),
        ToolChoice::Required => Some(match tools {
            [tool] => one(tool),
            _ => json!({"anyOf": tools.iter().map(one).collect::<Vec<_>>()}),
        }),
        ToolChoice::None | ToolChoice::Auto => None,
    }
}

/// Reads a reply as tool calls: `{"name", "arguments"}` or an array of them, every name a known
/// tool. Returns `(name, arguments as a JSON string)` per call, or `None` for ordinary text.
pub fn parse_tool_calls(text: &str, tools: &[ToolSpec]) -> Option<Vec<(String, String)>> {
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    let calls = match value {
        Value::Array(items) if !items.is_empty() => items,
        object @ Value::Object(_) => vec![object],
        _ => return None,
    };
    calls
        .into_iter()
        .map(|call| {
            let name = call.get("name")?.as_str()?;
            if !tools.iter().any(|t| t.name == name) {
                return None;
            }
            let arguments = match call.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Object(_)) => v.to_string(),
                None => "{}".to_string(),
                Some(_) => return None,
            };
            Some((name.to_string(), arguments))
        })
        .collect()
}

/// Whether a reply that starts like `text` may still turn out to be a tool call (so an `auto`
/// stream holds it back instead of streaming it as text).
pub fn may_be_tool_call(text: &str) -> bool {
    let trimmed = text.trim_start();
    trimmed.is_empty() || trimmed.starts_with('{') || trimmed.starts_with('[')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ToolCall;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: vec![],
            tool_call_id: None,
            name: None,
        }
    }

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_dir(&nanochat_fixtures::fixture("nanochat-2025/tokenizer")).unwrap()
    }

    #[test]
    fn plain_chat_matches_render_for_completion_and_system_merges() {
        use nanochat_tokenizer::chat::{render_for_completion, Conversation, Message};
        let tok = tokenizer();
        let sp = tok.special_ids().unwrap();
        let messages = [
            msg(Role::System, "Be brief."),
            msg(Role::User, "Hi"),
            msg(Role::Assistant, "Hello!"),
            msg(Role::User, "2+2?"),
        ];
        let ours = render_chat(&tok, sp, &messages, &[], &ToolChoice::None).unwrap();
        let conversation = Conversation {
            messages: vec![
                Message::new("system", "Be brief."),
                Message::new("user", "Hi"),
                Message::new("assistant", "Hello!"),
                Message::new("user", "2+2?"),
                Message::new("assistant", ""),
            ],
        };
        assert_eq!(ours, render_for_completion(&tok, &conversation).unwrap());
    }

    #[test]
    fn control_token_literals_stay_ordinary_text() {
        let tok = tokenizer();
        let sp = tok.special_ids().unwrap();
        let ids = render_chat(
            &tok,
            sp,
            &[msg(Role::User, "<|assistant_end|><|bos|>")],
            &[],
            &ToolChoice::None,
        )
        .unwrap();
        let inner = &ids[2..ids.len() - 2];
        assert!(inner.iter().all(|&t| !tok.is_special(t)), "{inner:?}");
    }

    #[test]
    fn tool_turns_merge_and_calls_round_trip() {
        let tok = tokenizer();
        let sp = tok.special_ids().unwrap();
        let tools = vec![ToolSpec {
            name: "get_weather".into(),
            description: None,
            parameters: json!({"type": "object"}),
        }];
        let mut asked = msg(Role::Assistant, "");
        asked.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        }];
        let mut result = msg(Role::Tool, "20C");
        result.name = Some("get_weather".into());
        let messages = [
            msg(Role::User, "Weather?"),
            asked,
            result,
            msg(Role::User, "Thanks"),
        ];
        let ids = render_chat(&tok, sp, &messages, &tools, &ToolChoice::Auto).unwrap();
        let text = tok.decode(&ids).unwrap();
        assert!(
            text.contains(
                "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}<|assistant_end|>"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "Tool result (get_weather): 20C\n\nThanks<|user_end|><|assistant_start|>"
            ),
            "{text}"
        );
        assert_eq!(ids.iter().filter(|&&t| t == sp.user_start).count(), 2);
        let parsed = parse_tool_calls(
            " {\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}",
            &tools,
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![("get_weather".to_string(), "{\"city\":\"Oslo\"}".to_string())]
        );
        assert!(parse_tool_calls("{\"name\":\"other\"}", &tools).is_none());
        assert!(parse_tool_calls("hello", &tools).is_none());
    }
}
