//! `nanochat generate`: a raw completion for scripts. `--json` prints one object
//! `{"prompt_ids", "ids", "text", "finish_reason"}`; with `--temperature 0` (the default) it is
//! greedy and deterministic.

use anyhow::{bail, Context, Result};
use clap::Args;
use nanochat_engine::{Engine, GenerateOptions, SamplingParams};

use crate::model_args::ModelArgs;

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt text (encoded with <|bos|> prepended unless --no-bos).
    #[arg(
        long,
        short = 'p',
        conflicts_with = "prompt_ids",
        required_unless_present = "prompt_ids"
    )]
    prompt: Option<String>,
    /// Prompt as token ids, e.g. 503,72,105 (used as given).
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Option<Vec<u32>>,
    /// Do not prepend <|bos|> to --prompt.
    #[arg(long)]
    no_bos: bool,
    /// Tokens to generate at most.
    #[arg(long, short = 'n', default_value_t = 64)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, short = 't', default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, short = 'k')]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one JSON object instead of the text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let (loaded, tokenizer) = args.model.load()?;
    let prompt_ids = match (&args.prompt, &args.prompt_ids) {
        (Some(text), _) => {
            let bos = if args.no_bos {
                None
            } else {
                Some(tokenizer.bos_id()?)
            };
            tokenizer.encode_with_specials(text, bos, None)?
        }
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give --prompt TEXT or --prompt-ids 1,2,3"),
    };
    let engine = Engine::new(&loaded.model, &tokenizer)?;
    let options = GenerateOptions {
        max_tokens: Some(args.max_tokens),
        sampling: SamplingParams::nanochat(args.temperature, args.top_k),
        seed: args.seed,
        ..GenerateOptions::default()
    };
    let mut generation = engine
        .generate(&prompt_ids, &options)
        .context("generating")?;
    let mut ids = Vec::new();
    let mut finish_reason = "length";
    while let Some(column) = generation.next_column()? {
        let token = column.tokens[0];
        if generation.is_terminal(token) {
            finish_reason = "stop";
            break;
        }
        ids.push(token);
    }
    let text = tokenizer.decode(&ids)?;
    if args.json {
        let out = serde_json::json!({"prompt_ids": prompt_ids, "ids": ids, "text": text, "finish_reason": finish_reason});
        println!("{out}");
    } else {
        println!("{text}");
    }
    Ok(())
}
