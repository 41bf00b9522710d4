//! Log-probabilities for `logprobs`/`top_logprobs`: log-softmax of the model's raw logits (before
//! temperature, penalties or grammar masks, as OpenAI reports the model's distribution), with a
//! token's text (lossy UTF-8 for a byte fragment) and its exact bytes.

use nanochat_tokenizer::Tokenizer;

use crate::backend::{TokenLogprob, TopLogprob};

/// The chosen `token`'s log-probability under `logits` (a `(vocab,)` row) and the `top` best.
pub fn token_logprobs(
    tokenizer: &Tokenizer,
    logits: &[f32],
    token: u32,
    top: usize,
) -> Result<TokenLogprob, Box<dyn std::error::Error + Send + Sync>> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_total = logits
        .iter()
        .map(|&l| ((l - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32
        + max;
    let logprob = |id: u32| {
        logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&l| l - log_total)
    };
    let describe =
        |id: u32| -> Result<(String, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
            let bytes = tokenizer.decode_bytes(&[id])?;
            Ok((String::from_utf8_lossy(&bytes).into_owned(), bytes))
        };
    let mut best: Vec<u32> = (0..logits.len() as u32).collect();
    let top = top.min(best.len());
    if top > 0 && top < best.len() {
        best.select_nth_unstable_by(top - 1, |&a, &b| {
            logits[b as usize].total_cmp(&logits[a as usize])
        });
    }
    best.truncate(top);
    best.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let (text, bytes) = describe(token)?;
    Ok(TokenLogprob {
        token: text,
        bytes,
        logprob: logprob(token),
        top: best
            .into_iter()
            .map(|id| {
                let (token, bytes) = describe(id)?;
                Ok(TopLogprob {
                    token,
                    bytes,
                    logprob: logprob(id),
                })
            })
            .collect::<Result<_, Box<dyn std::error::Error + Send + Sync>>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_normalise_and_top_is_sorted() {
        let tok =
            Tokenizer::from_dir(&nanochat_fixtures::fixture("nanochat-2025/tokenizer")).unwrap();
        let mut values = vec![0f32; tok.vocab_size()];
        values[65] = 3.0;
        values[66] = 2.0;
        let lp = token_logprobs(&tok, &values, 66, 3).unwrap();
        let total: f64 = values
            .iter()
            .map(|&v| (v + lp.logprob - 2.0) as f64)
            .map(f64::exp)
            .sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert_eq!(lp.top.len(), 3);
        assert_eq!(
            (lp.top[0].bytes.clone(), lp.top[1].bytes.clone()),
            (vec![b'A'], vec![b'B'])
        );
        assert!(lp.top[0].logprob > lp.top[1].logprob && lp.top[1].logprob > lp.top[2].logprob);
        assert_eq!(lp.token, "B");
    }
}
