"""PyTorch side of bench/compare_pytorch.sh: the same measurement as `nanochat bench engine`, on
nanochat's own model and Engine code path (commit 01f5f10, nanochat-reference.md §3 and §5), so the
two can be run one right after the other on the same machine.

Model: nanochat's GPT at the given depth (n_embd = 64·depth, heads of 128, n_kv_head = n_head,
vocab 65536, sequence_len 2048; weightless RMSNorm via F.rms_norm(eps=None); bf16 RoPE tables,
base 10000, QK-norm after RoPE; ReLU² MLP; untied lm_head; 15·tanh(x/15) softcap; SDPA attention
exactly as nanochat's CausalSelfAttention calls it). Random weights, seed 42, initialised like
`nanochat bench engine` does (nanochat's fan-in σ for every Linear, N(0, 1) embedding, c_proj
N(0, 0.02), lm_head zero so greedy decoding never stops early; values do not change the speed).

Generation: nanochat's Engine.generate with num_samples=1, temperature=0 (argmax): prefill a
batch-1 KV cache sized to the prompt with one forward of the whole prompt (logits for every
position, as nanochat computes them), sample from the last position, allocate the decode cache of
prompt+gen positions and copy the prefill cache into it, then one token at a time. Tool-use and
stop-token handling are left out (ours runs with use_tools off and no stop tokens; with a zero
lm_head the argmax is always token 0 anyway).

Timing, as `nanochat bench engine` does: prefill = from the call to the first token (cache
allocation, prompt forward, lm_head, argmax, decode-cache copy); decode = each later token's
time (one 1-token forward + lm_head + argmax), median per run; one warm-up generation of 8 tokens,
then --runs runs; the reported prefill and decode are the medians over the runs (upper median,
like ours). Everything runs under torch.inference_mode().

dtypes: f32 = nanochat's CPU path (nanochat uses no autocast on CPU: fp32 weights and
activations, bf16-valued rotary tables promoted in the products). bf16 = every parameter cast to
bfloat16, activations and KV cache then bf16 too (no autocast; nanochat itself never runs bf16
on CPU, this is the "model.to(bfloat16)" variant of nanochat-reference.md §11.1).

Prints human-readable lines on stderr and one JSON line on stdout."""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB_SIZE = 65536
SEQUENCE_LEN = 2048


def norm(x):
    return F.rms_norm(x, (x.size(-1),))  # eps=None: finfo(float32).eps, like nanochat


def apply_rotary_emb(x, cos, sin):
    d = x.shape[3] // 2
    x1, x2 = x[..., :d], x[..., d:]
    y1 = x1 * cos + x2 * sin
    y2 = x1 * (-sin) + x2 * cos
    return torch.cat([y1, y2], 3).to(x.dtype)


class KVCache:
    """nanochat's KVCache: one (n_layer, 2, B, H, T, D) tensor, allocated on first insert."""

    def __init__(self, batch_size, num_heads, seq_len, head_dim, num_layers):
        self.kv_shape = (num_layers, 2, batch_size, num_heads, seq_len, head_dim)
        self.kv_cache = None
        self.pos = 0

    def prefill(self, other):
        self.kv_cache = torch.empty(self.kv_shape, dtype=other.kv_cache.dtype, device=other.kv_cache.device)
        self.kv_cache[:, :, :, :, :other.pos, :] = other.kv_cache
        self.pos = other.pos

    def insert_kv(self, layer_idx, k, v):
        if self.kv_cache is None:
            self.kv_cache = torch.empty(self.kv_shape, dtype=k.dtype, device=k.device)
        t0, t1 = self.pos, self.pos + k.size(2)
        if t1 > self.kv_cache.size(4):
            t_needed = (t1 + 1024 + 1023) & ~1023
            extra = list(self.kv_cache.shape)
            extra[4] = t_needed - self.kv_cache.size(4)
            self.kv_cache = torch.cat([self.kv_cache, torch.empty(extra, dtype=k.dtype, device=k.device)], dim=4).contiguous()
            self.kv_shape = self.kv_cache.shape
        self.kv_cache[layer_idx, 0, :, :, t0:t1] = k
        self.kv_cache[layer_idx, 1, :, :, t0:t1] = v
        if layer_idx == self.kv_cache.size(0) - 1:
            self.pos = t1
        return self.kv_cache[layer_idx, 0, :, :, :t1], self.kv_cache[layer_idx, 1, :, :, :t1]


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, n_kv_head, layer_idx):
        super().__init__()
        self.layer_idx, self.n_head, self.n_kv_head = layer_idx, n_head, n_kv_head
        self.head_dim = n_embd // n_head
        self.c_q = nn.Linear(n_embd, n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(n_embd, n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(n_embd, n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x, cos_sin, kv_cache):
        B, T, _ = x.size()
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos_sin
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
        q, k = norm(q), norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.insert_kv(self.layer_idx, k, v)
        Tq, Tk = q.size(2), k.size(2)
        gqa = {"enable_gqa": True} if self.n_head != self.n_kv_head else {}
        if kv_cache is None or Tq == Tk:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)
        elif Tq == 1:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=False, **gqa)
        else:
            attn_mask = torch.zeros((Tq, Tk), dtype=torch.bool, device=q.device)
            prefix_len = Tk - Tq
            if prefix_len > 0:
                attn_mask[:, :prefix_len] = True
            attn_mask[:, prefix_len:] = torch.tril(torch.ones((Tq, Tq), dtype=torch.bool, device=q.device))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, **gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, n_embd, n_head, n_kv_head, layer_idx):
        super().__init__()
        self.attn = CausalSelfAttention(n_embd, n_head, n_kv_head, layer_idx)
        self.mlp = MLP(n_embd)

    def forward(self, x, cos_sin, kv_cache):
        x = x + self.attn(norm(x), cos_sin, kv_cache)
        x = x + self.mlp(norm(x))
        return x


class GPT(nn.Module):
    def __init__(self, depth, vocab_size=VOCAB_SIZE, sequence_len=SEQUENCE_LEN):
        super().__init__()
        self.n_layer = depth
        self.n_embd = 64 * depth
        self.n_head = max(1, (self.n_embd + 127) // 128)
        self.n_kv_head = self.n_head
        self.head_dim = self.n_embd // self.n_head
        self.vocab_size = vocab_size
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(vocab_size, self.n_embd),
            "h": nn.ModuleList([Block(self.n_embd, self.n_head, self.n_kv_head, i) for i in range(depth)]),
        })
        self.lm_head = nn.Linear(self.n_embd, vocab_size, bias=False)
        self.rotary_seq_len = sequence_len * 10
        self.cos = self.sin = None

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def init_weights(self, seed):
        """`nanochat bench engine`'s random init (InitOptions::benchmark): nanochat's fan-in σ,
        N(0, 1) embedding, c_proj N(0, 0.02), lm_head zero; in place, in the parameters' dtype."""
        torch.manual_seed(seed)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.lm_head.weight)
        for block in self.transformer.h:
            nn.init.normal_(block.attn.c_proj.weight, mean=0.0, std=0.02)
            nn.init.normal_(block.mlp.c_proj.weight, mean=0.0, std=0.02)
        # nanochat's _precompute_rotary_embeddings: fp32 angles, tables kept in bfloat16.
        channel_range = torch.arange(0, self.head_dim, 2, dtype=torch.float32)
        inv_freq = 1.0 / (10000 ** (channel_range / self.head_dim))
        t = torch.arange(self.rotary_seq_len, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        self.cos = freqs.cos().bfloat16()[None, :, None, :]
        self.sin = freqs.sin().bfloat16()[None, :, None, :]

    def forward(self, idx, kv_cache=None):
        _, T = idx.size()
        T0 = 0 if kv_cache is None else kv_cache.pos
        cos_sin = self.cos[:, T0:T0 + T], self.sin[:, T0:T0 + T]
        x = norm(self.transformer.wte(idx))
        for block in self.transformer.h:
            x = block(x, cos_sin, kv_cache)
        x = norm(x)
        logits = self.lm_head(x)
        softcap = 15
        return softcap * torch.tanh(logits / softcap)


def sample_next_token(logits, rng, temperature=0.0, top_k=None):
    """nanochat's sample_next_token (the benchmark uses temperature 0: argmax)."""
    if temperature == 0.0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    if top_k is not None:
        vals, idx = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1)
        probs = F.softmax(vals / temperature, dim=-1)
        return idx.gather(1, torch.multinomial(probs, num_samples=1, generator=rng))
    probs = F.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=rng)


@torch.inference_mode()
def generate(model, tokens, max_tokens, temperature=0.0, top_k=None, seed=42):
    """nanochat's Engine.generate for num_samples=1 (no tool use, no stop tokens): yields one
    token per step."""
    rng = torch.Generator(device="cpu")
    rng.manual_seed(seed)
    kv = {"num_heads": model.n_kv_head, "head_dim": model.head_dim, "num_layers": model.n_layer}
    kv_cache_prefill = KVCache(batch_size=1, seq_len=len(tokens), **kv)
    ids = torch.tensor([tokens], dtype=torch.long)
    logits = model.forward(ids, kv_cache=kv_cache_prefill)[:, -1, :]
    sampled_tokens = sample_next_token(logits, rng, temperature, top_k)[:, 0].tolist()
    kv_cache_decode = KVCache(batch_size=1, seq_len=len(tokens) + max_tokens, **kv)
    kv_cache_decode.prefill(kv_cache_prefill)
    del kv_cache_prefill
    num_generated = 0
    first_iteration = True
    while num_generated < max_tokens:
        if first_iteration:
            first_iteration = False
        else:
            logits = model.forward(ids, kv_cache=kv_cache_decode)[:, -1, :]
            sampled_tokens = sample_next_token(logits, rng, temperature, top_k)[:, 0].tolist()
        token_column = [sampled_tokens[0]]
        yield token_column
        num_generated += 1
        ids = torch.tensor(token_column, dtype=torch.long).unsqueeze(1)


def timed_run(model, prompt, gen):
    """(prefill seconds, [seconds per later token]) measured like `nanochat bench engine`."""
    t = time.perf_counter()
    stream = generate(model, prompt, gen)
    next(stream)
    prefill = time.perf_counter() - t
    steps = []
    while True:
        t = time.perf_counter()
        if next(stream, None) is None:
            break
        steps.append(time.perf_counter() - t)
    return prefill, steps


def median(values):
    return sorted(values)[len(values) // 2]  # the upper median, as ours takes it


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    if args.prompt < 1 or args.gen < 1:
        p.error("--prompt and --gen must be at least 1")

    torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    started = time.perf_counter()
    with torch.device("meta"):
        model = GPT(args.depth)
    model = model.to(dtype).to_empty(device="cpu")  # allocate once, directly in the dtype
    model.init_weights(seed=42)
    model.eval()
    load_s = time.perf_counter() - started
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; random d{args.depth} "
          f"({model.num_parameters()} params): {model.n_layer} layers, {model.n_embd} wide, "
          f"vocab {model.vocab_size}, {args.dtype}; built in {load_s:.2f}s", file=sys.stderr)

    prompt = [(i * 7919) % 256 for i in range(args.prompt)]  # the same prompt ours uses
    timed_run(model, prompt, 8)  # warm-up
    prefills, decodes = [], []
    for _ in range(max(1, args.runs)):
        prefill, steps = timed_run(model, prompt, args.gen)
        prefills.append(prefill)
        if steps:
            decodes.append(median(steps))
    prefill = median(prefills)
    decode = median(decodes) if decodes else None
    rss = peak_rss_bytes()
    print(f"prefill {args.prompt} tokens: {prefill * 1e3:.1f} ms ({args.prompt / prefill:.1f} tok/s)", file=sys.stderr)
    if decode is not None:
        print(f"decode: {decode * 1e3:.1f} ms/token ({1 / decode:.2f} tok/s), median of {args.runs} runs "
              f"of {args.gen} tokens", file=sys.stderr)
    if rss is not None:
        print(f"peak RSS: {rss / 1e9:.2f} GB", file=sys.stderr)
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "depth": args.depth,
        "dtype": args.dtype,
        "params": model.num_parameters(),
        "prompt": args.prompt,
        "gen": args.gen,
        "runs": args.runs,
        "load_s": load_s,
        "prefill_ms": prefill * 1e3,
        "prefill_tok_s": args.prompt / prefill,
        "decode_ms": decode * 1e3 if decode is not None else None,
        "decode_tok_s": 1 / decode if decode is not None else None,
        "peak_rss_gb": rss / 1e9 if rss is not None else None,
    }), flush=True)


if __name__ == "__main__":
    main()
