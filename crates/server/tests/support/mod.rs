//! What the backend-level tests share: a one-message chat request and the fixture model
//! `sft-d2` as a checkpoint backend.

use nanochat_engine::SamplingParams;
use nanochat_model::checkpoint::checkpoint_in_dir;
use nanochat_server::backend::{
    ChatMessage, GenerationRequest, OutputFormat, Prompt, Role, SimulationOverrides, ToolChoice,
};
use nanochat_server::model_backend::{CheckpointBackend, CheckpointSpec};

/// A greedy chat request with one user message.
pub fn chat_request(model: &str, question: &str, max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        model: model.into(),
        prompt: Prompt::Chat(vec![ChatMessage {
            role: Role::User,
            content: question.into(),
            tool_calls: vec![],
            tool_call_id: None,
            name: None,
        }]),
        max_tokens: Some(max_tokens),
        clamp_max_tokens: false,
        n: 1,
        sampling: SamplingParams::default(),
        seed: 0,
        stop: vec![],
        logprobs: None,
        output: OutputFormat::Text,
        tools: vec![],
        tool_choice: ToolChoice::None,
        parallel_tool_calls: false,
        simulation: SimulationOverrides::default(),
    }
}

/// The random-weight fixture model `sft-d2`, loaded now, with a 640-token context; `adjust`
/// changes the rest of its spec (queue, slots, KV budget).
pub fn sft_d2_backend(adjust: impl FnOnce(&mut CheckpointSpec)) -> CheckpointBackend {
    let dir = nanochat_fixtures::fixture("nanochat-2025/chatsft_checkpoints/d2");
    let mut spec = CheckpointSpec {
        tokenizer_dir: Some(nanochat_fixtures::fixture("nanochat-2025/tokenizer")),
        max_model_len: Some(640),
        ..CheckpointSpec::new(checkpoint_in_dir(&dir, None).unwrap())
    };
    adjust(&mut spec);
    CheckpointBackend::start("sft-d2", spec, true, Default::default()).unwrap()
}
