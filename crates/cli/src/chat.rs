//! `nanochat chat`: talk to a model in the terminal, like nanochat's `chat_cli.py`: one growing
//! conversation (`<|bos|>` + turns), the reply streamed as it is generated (whole characters
//! only), `clear` to start over, `quit`/`exit` to leave, `-p` for a single prompt.

use std::io::{BufRead, Write};

use anyhow::Result;
use clap::Args;
use nanochat_engine::{Engine, GenerateOptions, SamplingParams, TextStream};

use crate::model_args::ModelArgs;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Ask one question, print the answer and exit.
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    #[arg(long, short = 't', default_value_t = 0.6)]
    temperature: f32,
    #[arg(long, short = 'k', default_value_t = 50)]
    top_k: usize,
    /// Tokens per reply at most.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let (loaded, tokenizer) = args.model.load()?;
    let engine = Engine::new(&loaded.model, &tokenizer)?;
    let ids = tokenizer.special_ids()?;
    let (bos, user_start, user_end) = (ids.bos, ids.user_start, ids.user_end);
    let (assistant_start, assistant_end) = (ids.assistant_start, ids.assistant_end);
    let options = GenerateOptions {
        max_tokens: Some(args.max_tokens),
        sampling: SamplingParams::nanochat(args.temperature, Some(args.top_k)),
        seed: args.seed,
        ..GenerateOptions::default()
    };
    let mut conversation = vec![bos];
    let interactive = args.prompt.is_none();
    if interactive {
        eprintln!("nanochat interactive mode — type 'quit' or 'exit' to leave, 'clear' to start a new conversation");
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let input = match &args.prompt {
            Some(p) => p.clone(),
            None => {
                print!("\nUser: ");
                std::io::stdout().flush()?;
                match lines.next() {
                    Some(line) => line?,
                    None => break,
                }
            }
        };
        let input = input.trim();
        match input {
            "quit" | "exit" if interactive => break,
            "clear" if interactive => {
                conversation = vec![bos];
                println!("Conversation cleared.");
                continue;
            }
            "" if interactive => continue,
            _ => {}
        }
        conversation.push(user_start);
        conversation.extend(tokenizer.encode(input)?);
        conversation.push(user_end);
        conversation.push(assistant_start);
        if interactive {
            print!("\nAssistant: ");
        }
        let max_context = loaded.config.rotary_len();
        if conversation.len() + args.max_tokens > max_context {
            anyhow::bail!("the conversation no longer fits the model's context ({max_context} tokens); type 'clear'");
        }
        let mut generation = engine.generate(&conversation, &options)?;
        let mut stream = TextStream::new();
        let mut reply = Vec::new();
        let mut stopped = false;
        while let Some(column) = generation.next_column()? {
            let token = column.tokens[0];
            if generation.is_terminal(token) {
                stopped = true;
                break;
            }
            reply.push(token);
            print!("{}", stream.push(&tokenizer, token)?);
            std::io::stdout().flush()?;
        }
        println!();
        conversation.extend(&reply);
        conversation.push(assistant_end);
        if !stopped && interactive {
            eprintln!("[reply cut at {} tokens]", args.max_tokens);
        }
        if !interactive {
            break;
        }
    }
    Ok(())
}
