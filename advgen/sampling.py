"""Batched sampling in pure torch: a preallocated KV cache, left-padded prefill, a static decode loop.

    prompts --prefill--> cache + first logits --_decode_step (x N)--> tokens, mask, log-probs

Each step's choice (filters and the draw) is `advgen.kernels.pick`. The forward runs the HF model's own
modules (embeddings, norms, projections, MLPs, so LoRA layers and any HF weight layout work unchanged)
around advgen's attention over a cache indexed by position. GPT-2 and Llama-family models (Llama,
Mistral, Qwen2; SmolLM2 is a Llama) are supported. Nothing inside the decode loop reads a value back to
the host on CUDA.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F

from advgen import kernels, seeds
from advgen.errors import AdvgenError

LLAMA_FAMILY = ("llama", "mistral", "qwen2")


class Samples(NamedTuple):
    tokens: torch.Tensor          # (B, N) generated ids; pad after a row's EOS
    mask: torch.Tensor            # (B, N) True on generated tokens, EOS included
    logprobs: torch.Tensor        # (B, N) log-prob of each token under the sampling distribution (0 where masked)
    model_logprobs: torch.Tensor  # (B, N) log-prob under the model itself at temperature 1 (0 where masked)


# ----------------------------------------------------------------------------------------------
# The forward over a preallocated KV cache


def _unwrap(model):
    """A peft model's underlying HF model (its LoRA layers stay in place and are used)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def check_supported(model) -> None:
    kind = model.config.model_type
    if kind != "gpt2" and kind not in LLAMA_FAMILY:
        raise AdvgenError(f"advgen's sampler supports gpt2 and {', '.join(LLAMA_FAMILY)} models, not {kind!r}")
    if kind == "gpt2" and model.config.reorder_and_upcast_attn:
        raise AdvgenError("advgen's sampler does not support GPT-2's reorder_and_upcast_attn")


def new_cache(model, batch: int, length: int) -> list:
    """Per layer, zero keys and values, each (B, kv_heads, length, head_dim) in the model's dtype and device.
    Separate tensors, so a compiled step writes each in place: a write into a view of one big cache would
    make it copy the whole cache at every step."""
    cfg = model.config
    p = next(model.parameters())
    if cfg.model_type == "gpt2":
        layers, heads, head_dim = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
    else:
        layers, heads = cfg.num_hidden_layers, cfg.num_key_value_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return [tuple(torch.zeros(batch, heads, length, head_dim, dtype=p.dtype, device=p.device) for _ in "kv")
            for _ in range(layers)]


def static_cache(model, batch: int, length: int) -> list:
    """new_cache, kept on the model and handed out again for the same shape, its tensors marked static for
    torch.compile (what compile=True uses). The compiled step writes into the cache, and CUDA graph trees
    capture a step that mutates an input only when the input keeps its address: with a new cache per call
    they would skip the graphs. Stale entries are harmless: prefill rewrites every prompt slot, and each
    later slot stays masked until the step that writes it."""
    p = next(model.parameters())
    key = (batch, length, p.dtype, p.device)
    held = getattr(model, "_advgen_cache", None)
    if held is None or held[0] != key:
        cache = new_cache(model, batch, length)
        for tensor in (t for layer in cache for t in layer):
            torch._dynamo.mark_static_address(tensor)
        held = model._advgen_cache = (key, cache)
    return held[1]


def _attend(q, k, v, layer_cache, slots, allowed, scale):
    """Write k, v (B, H_kv, T, D) into the layer's cache (keys, values) at `slots` (T,), attend q (B, H, T, D)
    over the whole cache under `allowed` (B, 1, T, S). Returns (B, T, H * D)."""
    keys, values = layer_cache
    keys.index_copy_(2, slots, k)
    values.index_copy_(2, slots, v)
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, scale=scale,
                                         enable_gqa=q.shape[1] != k.shape[1])
    return out.transpose(1, 2).flatten(2)


def _heads(x, head_dim):
    return x.unflatten(-1, (-1, head_dim)).transpose(1, 2)  # (B, T, H*D) -> (B, H, T, D)


def _gpt2_hidden(model, cache, ids, positions, slots, allowed):
    t = model.transformer
    x = t.wte(ids) + t.wpe(positions)
    for block, layer_cache in zip(t.h, cache):
        a = block.attn
        q, k, v = a.c_attn(block.ln_1(x)).split(a.embed_dim, dim=2)
        o = _attend(_heads(q, a.head_dim), _heads(k, a.head_dim), _heads(v, a.head_dim), layer_cache, slots,
                    allowed, a.scaling)
        x = x + a.c_proj(o)
        x = x + block.mlp(block.ln_2(x))
    return t.ln_f(x)


def _llama_hidden(model, cache, ids, positions, slots, allowed):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    base = model.model
    x = base.embed_tokens(ids)
    cos, sin = base.rotary_emb(x, positions)
    for layer, layer_cache in zip(base.layers, cache):
        a = layer.self_attn
        h = layer.input_layernorm(x)
        q, k = apply_rotary_pos_emb(_heads(a.q_proj(h), a.head_dim), _heads(a.k_proj(h), a.head_dim), cos, sin)
        o = _attend(q, k, _heads(a.v_proj(h), a.head_dim), layer_cache, slots, allowed, a.scaling)
        x = x + a.o_proj(o)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return base.norm(x)


def forward_last(model, cache, ids, positions, slots, key_valid):
    """Run ids (B, T) at cache slots (T,) with position ids (B, T); return float32 logits of the last
    position (B, V). key_valid (B, S) marks the cache slots that hold real tokens."""
    slot_index = torch.arange(key_valid.shape[1], device=ids.device)
    # causal over real tokens; every query also sees its own slot, so a padding row never attends to nothing
    allowed = (key_valid[:, None, :] & (slot_index <= slots[:, None])) | (slot_index == slots[:, None])  # (B, T, S)
    hidden = _gpt2_hidden if model.config.model_type == "gpt2" else _llama_hidden
    h = hidden(model, cache, ids, positions, slots, allowed[:, None])
    return model.lm_head(h[:, -1]).float()


# ----------------------------------------------------------------------------------------------
# The decode loop


def left_pad(prompts: list, pad_id: int, device):
    """Token-id lists -> left-padded ids (B, P) and a bool mask of the real tokens."""
    P = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (P - len(p)) + list(p) for p in prompts], device=device)
    valid = torch.tensor([[False] * (P - len(p)) + [True] * len(p) for p in prompts], device=device)
    return ids, valid


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded (B, T) mask, as HF computes them: the first real token is 0."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def prefill(model, prompts: list, max_new_tokens: int, pad_id: int, reuse_cache: bool = False):
    """Left-pad the prompts, allocate the cache for max_new_tokens more (reuse_cache: the model's
    static_cache), run the prompts through it.
    -> (last-position logits (B, V), cache, key_valid (B, S), position of the first new token (B, 1))."""
    device = next(model.parameters()).device
    ids, valid = left_pad(prompts, pad_id, device)
    B, P = ids.shape
    key_valid = torch.cat([valid, torch.ones(B, max_new_tokens, dtype=torch.bool, device=device)], dim=1)
    cache = (static_cache if reuse_cache else new_cache)(model, B, P + max_new_tokens)
    pos = positions(valid)
    logits = forward_last(model, cache, ids, pos, torch.arange(P, device=device), key_valid)
    return logits, cache, key_valid, pos[:, -1:] + 1


@torch.no_grad()
def generate(model, prompts: list, max_new_tokens: int, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
             repetition_penalty=1.0, eos_id=None, pad_id: int = 0, seed: int = 0, compile: bool = False,
             rows_of: tuple = None) -> Samples:
    """Sample continuations of token-id prompts (lists of different lengths) in one batch.

    Controls are scalars or per-row sequences/tensors of length B. temperature 0 is greedy for that row;
    top_k 0 and top_p 1 and min_p 0 and repetition_penalty 1 are off. Rows stop at eos_id (None: never)
    and are masked, not removed. The draws come from a torch.Generator seeded with `seed`, so the global
    RNG is untouched and the same seed gives the same samples. compile=True compiles the decode step
    (on CUDA with CUDA graphs, mode "reduce-overhead") and keeps the KV cache on the model for the next
    call of the same shape (static_cache). rows_of=(offset, total): these prompts are rows
    offset.. of a batch of `total` drawn with `seed`, and get that batch's draws for those rows (the uniforms
    of each row and step), so a batch split over ranks samples what the whole batch would."""
    model = _unwrap(model)
    check_supported(model)
    device = next(model.parameters()).device
    B, P, N = len(prompts), max(len(p) for p in prompts), max_new_tokens
    if min(len(p) for p in prompts) == 0 or N < 1:
        raise AdvgenError("every prompt needs at least one token and max_new_tokens must be >= 1")
    vocab = model.config.vocab_size
    c = kernels.controls(B, vocab, device, temperature, top_k, top_p, min_p, repetition_penalty,
                         sync_free=device.type == "cuda")

    gen = torch.Generator(device=device).manual_seed(seed)
    offset, total = rows_of or (0, B)
    uniforms = torch.rand(N, total, kernels.PROPOSALS + 1, generator=gen, device=device)[:, offset:offset + B]
    seen = None
    if c.penalty is not None:
        seen = torch.zeros(B, vocab, dtype=torch.bool, device=device)
        for row, p in enumerate(prompts):
            seen[row, list(p)] = True

    was_training = model.training
    model.eval()
    step = torch.compile(_decode_step, mode="reduce-overhead" if device.type == "cuda" else None) if compile \
        else _decode_step
    try:
        logits, cache, key_valid, next_position = prefill(model, prompts, N, pad_id, reuse_cache=compile)
        token, logprob, model_logprob = kernels.pick(logits, seen, uniforms[0], c)
        out = [torch.zeros(B, N, dtype=dt, device=device) for dt in (torch.long, torch.bool, torch.float, torch.float)]
        done = torch.zeros(B, dtype=torch.bool, device=device)
        slots = torch.arange(P, P + N, device=device)  # made once: a host-to-device copy per step would sync
        for t in range(N):
            live = ~done
            token = token.masked_fill(done, pad_id)
            for o, v in zip(out, (token, live, logprob * live, model_logprob * live)):
                o[:, t] = v
            if eos_id is not None:
                done = done | (token == eos_id)
            if seen is not None:
                seen.scatter_(1, token[:, None], True)
            if t == N - 1 or (device.type == "cpu" and bool(done.all())):  # on CPU the check costs no sync
                break
            token, logprob, model_logprob = step(model, cache, token, next_position + t, slots[t:t + 1], key_valid,
                                                 seen, uniforms[t + 1], c)
    finally:
        model.train(was_training)
    return Samples(*out)


def _decode_step(model, cache, token, position, slot, key_valid, seen, uniforms, controls):
    """One token for every row: the forward at one new position, then the pick (what compile=True compiles)."""
    return kernels.pick(forward_last(model, cache, token[:, None], position, slot, key_valid), seen, uniforms, controls)


# ----------------------------------------------------------------------------------------------
# Convenience wrappers over token-id prompts


def sample(model, tokenizer, prompts: list, max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, seed: int = 0) -> list:
    """Prompts (lists of token ids) -> decoded continuations, cut at EOS."""
    s = generate(model, prompts, max_new_tokens, temperature=temperature, top_p=top_p,
                 eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id, seed=seed)
    return decode(tokenizer, s)


def decode(tokenizer, samples: Samples) -> list:
    """Generated ids -> texts, without EOS and padding."""
    return [tokenizer.decode([t for t, m in zip(row, keep) if m], skip_special_tokens=True).strip()
            for row, keep in zip(samples.tokens.tolist(), samples.mask.tolist())]


def sample_batches(model, tokenizer, prompts: list, max_new_tokens: int, batch_size: int = 64, seed: int = 0,
                   **controls):
    """Yield (start, Samples) for consecutive batches of prompts; the batch starting at prompt `start` draws
    from the stream seeds.derive(seed, "batch", start)."""
    for start in range(0, len(prompts), batch_size):
        yield start, generate(model, prompts[start:start + batch_size], max_new_tokens, eos_id=tokenizer.eos_token_id,
                              pad_id=tokenizer.pad_token_id, seed=seeds.derive(seed, "batch", start), **controls)
