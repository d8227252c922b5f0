"""Batched sampling in pure torch: a preallocated KV cache, left-padded prefill, a static decode loop.

The pieces, each a small function (gpt-fast style):

    logits --candidates--> weights --floor_of--> floor, kept mass --draw--> token, log-probs
    prompts --prefill--> cache + first logits --_decode_step (x N)--> tokens, mask, log-probs

The forward runs the HF model's own modules (embeddings, norms, projections, MLPs, so LoRA layers
and any HF weight layout work unchanged) around advgen's attention over a cache indexed by position.
GPT-2 and Llama-family models (Llama, Mistral, Qwen2; SmolLM2 is a Llama) are supported.

Sampling controls follow HF `generate`'s definitions and order: repetition penalty, temperature,
top-k, top-p, min-p. Each may be a scalar or a per-row tensor, so one batch can sweep temperatures.
Top-p and min-p both keep the weights at or above a floor. Top-p never sorts the vocabulary: a mass
histogram over the floats' bits finds the exact floor of HF's sorted-cumsum definition. The draw
never applies the floor to the whole vocabulary either: rejection sampling proposes from all the
weights and takes the first proposal at or above the floor. Nothing inside the decode loop reads a
value back to the host on CUDA.
"""
import json
import random
import sys
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from advgen.config import AdvgenError

LLAMA_FAMILY = ("llama", "mistral", "qwen2")
_HIGH_BUCKETS = (0x3F800000 >> 16) + 1  # high 16 bits of the floats in [0, 1]: 1.0 is 0x3F800000
_SORT_BELOW = 4096  # candidate sets smaller than this find the nucleus by sorting; larger ones by histograms
PROPOSALS = 8  # rejection-sampling proposals per row and step; one more uniform is kept for the direct draw


class Samples(NamedTuple):
    tokens: torch.Tensor          # (B, N) generated ids; pad after a row's EOS
    mask: torch.Tensor            # (B, N) True on generated tokens, EOS included
    logprobs: torch.Tensor        # (B, N) log-prob of each token under the sampling distribution (0 where masked)
    model_logprobs: torch.Tensor  # (B, N) log-prob under the model itself at temperature 1 (0 where masked)


# ----------------------------------------------------------------------------------------------
# Sampling controls: logits -> candidate weights -> a floor that filters them -> one draw


def per_row(value, batch: int, device, dtype=torch.float32) -> torch.Tensor:
    """A scalar or a (B,) sequence/tensor -> a (B, 1) tensor."""
    t = torch.as_tensor(value, dtype=dtype, device=device)
    return t.expand(batch).reshape(batch, 1) if t.dim() == 0 else t.reshape(batch, 1)


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """HF's repetition penalty: logits of tokens already present are divided by the penalty when
    positive and multiplied by it when negative. seen: (B, V) bool."""
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def candidates(logits: torch.Tensor, temperature=None, top_k: int = 0, k_per_row=None):
    """(B, V) float logits -> (weights, ids): exp((logit - max) / temperature) of the candidate tokens, so the
    most probable has weight 1. With top-k the candidates are the top-k tokens (B, k), kept in vocabulary order,
    and ids maps them back; without, ids is None and the candidates are the whole vocabulary. Vocabulary order
    means a given uniform draws the same token whichever filters produced the weights.

    temperature: (B, 1) > 0 or None (all 1). top_k: the largest k of the batch as a host int (0: off);
    k_per_row: (B, 1) per-row k <= top_k, or None when every row uses top_k."""
    z, ids = logits, None
    if top_k:
        z, ids = z.topk(top_k, dim=-1)
        if k_per_row is not None:
            z = z.masked_fill(torch.arange(top_k, device=z.device) >= k_per_row, float("-inf"))
        ids, order = ids.sort(dim=-1)
        z = z.gather(1, order)
    weights = z - z.amax(-1, keepdim=True)
    if temperature is not None:
        weights = weights.div_(temperature)
    return weights.exp_(), ids


def nucleus(weights: torch.Tensor, top_p: torch.Tensor, sync_free: bool = True):
    """(B, C) weights in [0, 1], top_p (B, 1) -> (floor, kept), each (B, 1): HF's top-p nucleus (sorted
    ascending, a token is removed while the mass at or below it is at most (1 - top_p) of the total) is the
    weights >= floor, and kept is their mass. Rows with top_p >= 1 get floor 0 and keep everything.

    Small candidate sets are sorted. Large ones never are: non-negative floats order like their int32 bits, so
    a mass histogram over the high 16 bits (each float's bfloat16 half, viewed in place) finds the bucket the
    cut falls in, and that bucket's members settle the floor: gathered and sorted (this reads a count back to
    the host, free on CPU), or with sync_free a second histogram over their low 16 bits (nothing read back:
    CUDA graphs). Equal weights at the cut are all kept, where HF's sort keeps an arbitrary subset of them."""
    B, C = weights.shape
    everything = top_p >= 1
    if C < _SORT_BELOW:
        asc = weights.sort(-1).values
        cdf = asc.cumsum(-1)
        floor = asc.gather(1, torch.searchsorted(cdf, (1 - top_p) * cdf[:, -1:], right=True).clamp_(max=C - 1))
        floor = floor.masked_fill(everything, 0.0)
        return floor, (asc * (asc >= floor)).sum(-1, keepdim=True)
    weights = weights.contiguous()
    bits = weights.view(torch.int32)
    high = weights.view(torch.int16)[:, 1::2] if sys.byteorder == "little" else weights.view(torch.int16)[:, ::2]
    hist = torch.zeros(B, _HIGH_BUCKETS, device=weights.device, dtype=weights.dtype)
    hist = hist.scatter_add_(1, high.long(), weights)
    # Masses summed in float64: the kept mass, total minus the mass below, does not cancel when little is kept.
    fraction = 1 - top_p.double()
    bucket, below, total = _locate(hist, fraction)  # the bucket the cut falls in, the mass below it
    cut = fraction * total
    if sync_free:
        base = (bucket.int() << 16) - 1  # slot 0 gathers the mass below the bucket, the last slot the mass above
        slot = (bits - base).clamp_(0, (1 << 16) + 1).long()
        # float64: slots 0 and last each add up many weights
        hist = torch.zeros(B, (1 << 16) + 2, device=weights.device, dtype=torch.float64)
        hist = hist.scatter_add_(1, slot, weights.double())
        s, below, total_here = _locate(hist, fraction)
        inside_slot_0 = s == 0  # rounding put the cut in slot 0: the floor is the bucket's first value
        s, below = torch.where(inside_slot_0, 1, s), torch.where(inside_slot_0, hist[:, :1], below)
        floor, kept = (base + s.int()).view(torch.float32), total_here - below
    else:
        flat = _true_indices(high == bucket.short())  # the bucket's members
        rows, member = flat // C, bits.view(-1)[flat]
        order = ((rows << 32) | member).argsort()  # by row, then by value
        rows, member = rows[order], member[order]
        mass = member.view(torch.float32).double()
        running = mass.cumsum(0)
        first, last = (torch.searchsorted(rows, torch.arange(B, device=rows.device), right=r) for r in (False, True))
        within = running - (running - mass)[first][rows]  # the row's member mass up to and including each one
        position = torch.arange(len(rows), device=rows.device)
        over = (below[rows, 0] + within > cut[rows, 0]) | (position == last[rows] - 1)  # the last one: rounding
        floor_at = torch.full_like(first, len(rows)).scatter_reduce_(0, rows, position.where(over, len(rows)), "amin")
        floor = member[floor_at].view(torch.float32)[:, None]
        removed = below[:, 0].index_add(0, rows, mass * (member < member[floor_at][rows]))
        kept = total - removed[:, None]
    return floor.masked_fill(everything, 0.0), torch.where(everything, total, kept).float()


# Eager always: its sizes depend on the data, and compiled for a dynamic batch (a second batch size), torch
# 2.13 fails on the int64 view of a slice whose length is a multiple of 8 ("must be divisible by 8").
@torch.compiler.disable
def _true_indices(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of the True entries of a contiguous bool tensor, fast when they are few: nonzero runs over
    8-byte words, and only the words holding a True are unpacked."""
    flat = mask.view(-1)
    n = flat.numel() // 8 * 8
    words = flat[:n].view(torch.int64).nonzero().squeeze(1)
    idx = (words[:, None] * 8 + torch.arange(8, device=mask.device)).flatten()
    return torch.cat([idx[flat[idx]], n + flat[n:].nonzero().squeeze(1)])


def floor_of(weights: torch.Tensor, top_p=None, min_p=None, sync_free: bool = True):
    """The filters after temperature and top-k, in HF's order, as one floor on the weights: (floor, kept mass),
    each (B, 1), or (None, None) when neither top-p nor min-p is on. top_p, min_p: (B, 1) or None. min-p keeps
    p / p_max >= min_p, which is weight >= min_p (top-p's renormalisation does not change that ratio)."""
    floor = kept = None
    if top_p is not None:
        floor, kept = nucleus(weights, top_p, sync_free)
    if min_p is not None:
        floor = min_p if floor is None else torch.maximum(floor, min_p)
        kept = (weights * (weights >= floor)).sum(-1, keepdim=True)
    return floor, kept


def sampling_weights(logits: torch.Tensor, temperature=None, top_k: int = 0, top_p=None, min_p=None,
                     k_per_row=None):
    """The whole filtered sampling distribution, unnormalised: (weights with zeros where filtered out, ids),
    as `candidates` describes them. The sampler itself never builds it; tests compare it with HF's."""
    weights, ids = candidates(logits, temperature, top_k, k_per_row)
    floor, _ = floor_of(weights, top_p, min_p)
    return weights if floor is None else weights * (weights >= floor), ids


def draw(weights: torch.Tensor, uniforms: torch.Tensor, floor=None, kept=None, sync_free: bool = True):
    """An exact draw from the weights (B, C), restricted to weights >= floor (B, 1) of mass kept when a floor is
    given, with PROPOSALS + 1 uniforms in [0, 1) per row (B, PROPOSALS + 1). Returns candidate indices (B,),
    their log-probabilities under the restricted distribution, and the weights' total (B,).

    Rejection sampling, so the floor never has to be applied to the whole vocabulary: the proposals invert the
    uniforms through the cumulative weights in candidate order; the first at or above the floor is taken (without
    a floor, the first). A row whose proposals all fall below draws from the restricted weights directly with its
    last uniform, so the result is exactly the restricted distribution."""
    index, _, total = _locate(weights, uniforms[:, :1 if floor is None else PROPOSALS])
    if floor is None:
        kept = total
    else:
        accepted = weights.gather(1, index) >= floor
        index = index.gather(1, accepted.int().argmax(-1, keepdim=True))
        rejected = ~accepted.any(-1)
        if sync_free:
            direct = _locate(weights * (weights >= floor), uniforms[:, PROPOSALS:])[0]
            index = torch.where(rejected[:, None], direct, index)
        elif bool(rejected.any()):
            rows = rejected.nonzero().squeeze(1)
            w = weights[rows]
            index[rows] = _locate(w * (w >= floor[rows]), uniforms[rows, PROPOSALS:])[0]
    logprob = (weights.gather(1, index).log() - kept.log()).float()
    return index.squeeze(1), logprob.squeeze(1), total.float().squeeze(1)


def _locate(masses: torch.Tensor, fractions: torch.Tensor, block: int = 64):
    """masses (B, C) >= 0, fractions (B, R) in [0, 1) -> (index, before, total): for each fraction, the first
    index whose cumulative mass exceeds fraction * total (always one with positive mass), the cumulative mass
    before it (B, R), and the total mass (B, 1), sums in float64. Two levels, so no cumulative sum runs over all
    C: the block of `block` entries is found from the blocks' masses, then the entry inside it."""
    B, C = masses.shape
    full = C // block * block
    sums = torch.cat([masses[:, :full].unflatten(1, (full // block, block)).sum(-1),
                      masses[:, full:].sum(-1, keepdim=True)], 1).double()
    cdf = sums.cumsum(-1)
    total = cdf[:, -1:]
    target = fractions * total
    last = torch.searchsorted(cdf, total.contiguous())  # float rounding at the top: the last block with mass
    k = torch.minimum(torch.searchsorted(cdf, target, right=True), last)
    before = cdf.gather(1, k) - sums.gather(1, k)
    cols = k[..., None] * block + torch.arange(block, device=masses.device)  # (B, R, block)
    inside = masses.gather(1, cols.clamp(max=C - 1).flatten(1)).view(cols.shape) * (cols < C)
    inside = inside.cumsum(-1, dtype=torch.float64)
    j = torch.minimum(torch.searchsorted(inside, (target - before)[..., None], right=True),
                      torch.searchsorted(inside, inside[..., -1:].contiguous())).squeeze(-1)  # the same, inside
    before = before + torch.where(j > 0, inside.gather(2, (j - 1).clamp(min=0)[..., None]).squeeze(-1), 0.0)
    return k * block + j, before, total


# ----------------------------------------------------------------------------------------------
# The forward over a preallocated KV cache


def _unwrap(model):
    """A peft model's underlying HF model (its LoRA layers stay in place and are used)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _check_supported(model) -> None:
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


def check_controls(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0) -> None:
    """Raise AdvgenError, naming the setting, for a control outside its range (scalars or per-row values)."""
    rules = [("temperature", temperature, lambda t: t >= 0, ">= 0"), ("top_k", top_k, lambda t: t >= 0, ">= 0"),
             ("top_p", top_p, lambda t: (t > 0) & (t <= 1), "in (0, 1]"),
             ("min_p", min_p, lambda t: (t >= 0) & (t <= 1), "in [0, 1]"),
             ("repetition_penalty", repetition_penalty, lambda t: t > 0, "> 0")]
    for name, value, ok, expected in rules:
        if not bool(ok(torch.as_tensor(value, dtype=torch.float64)).all()):
            raise AdvgenError(f"--{name.replace('_', '-')} must be {expected}, got {value}")


def _controls(batch, vocab, device, temperature, top_k, top_p, min_p, repetition_penalty, sync_free=True):
    """Scalars or per-row values -> (B, 1) tensors, plus the host-side switches that fix the loop's shape.
    sync_free: the pick may not read values back to the host (on CUDA)."""
    check_controls(temperature, top_k, top_p, min_p, repetition_penalty)
    temp = per_row(temperature, batch, device)
    k = per_row(top_k, batch, device, torch.long)
    k = torch.where((k == 0) | (k > vocab), vocab, k)
    p = per_row(top_p, batch, device)
    mp = per_row(min_p, batch, device)
    pen = per_row(repetition_penalty, batch, device)
    k_max = int(k.max())
    return {
        "greedy": temp == 0,
        "any_greedy": bool((temp == 0).any()), "all_greedy": bool((temp == 0).all()),
        "temperature": None if bool(((temp == 0) | (temp == 1)).all()) else torch.where(temp == 0, 1.0, temp),
        "top_k": 0 if bool((k == vocab).all()) else k_max,
        "k_per_row": None if bool((k == k_max).all()) else k,
        "top_p": p if bool((p < 1).any()) else None,
        "min_p": mp if bool((mp > 0).any()) else None,
        "penalty": pen if bool((pen != 1).any()) else None,
        "sync_free": sync_free,
    }


def _pick(logits, seen, uniforms, c):
    """One step's choice: (token (B,), log-prob under the sampling distribution, under the model at T=1)."""
    scores = logits if c["penalty"] is None else penalize_repeats(logits, seen, c["penalty"])
    if c["all_greedy"]:
        token, logprob = scores.argmax(-1), torch.zeros_like(logits[:, 0])
    else:
        weights, ids = candidates(scores, c["temperature"], c["top_k"], c["k_per_row"])
        floor, kept = floor_of(weights, c["top_p"], c["min_p"], c["sync_free"])
        index, logprob, total = draw(weights, uniforms, floor, kept, c["sync_free"])
        if ids is None and c["temperature"] is None and c["penalty"] is None and not c["any_greedy"]:
            # the weights are the model's own distribution: no second pass over the logits for its normaliser
            model_logprob = weights.gather(1, index[:, None]).squeeze(1).log() - total.log()
            return index, logprob, model_logprob
        token = index if ids is None else ids.gather(1, index[:, None]).squeeze(1)
        if c["any_greedy"]:
            g = c["greedy"].squeeze(1)
            token, logprob = torch.where(g, scores.argmax(-1), token), logprob.masked_fill(g, 0.0)
    return token, logprob, logits.gather(1, token[:, None]).squeeze(1) - logits.logsumexp(-1)


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
    _check_supported(model)
    device = next(model.parameters()).device
    B, P, N = len(prompts), max(len(p) for p in prompts), max_new_tokens
    if min(len(p) for p in prompts) == 0 or N < 1:
        raise AdvgenError("every prompt needs at least one token and max_new_tokens must be >= 1")
    vocab = model.config.vocab_size
    c = _controls(B, vocab, device, temperature, top_k, top_p, min_p, repetition_penalty,
                  sync_free=device.type == "cuda")

    gen = torch.Generator(device=device).manual_seed(seed)
    offset, total = rows_of or (0, B)
    uniforms = torch.rand(N, total, PROPOSALS + 1, generator=gen, device=device)[:, offset:offset + B]
    seen = None
    if c["penalty"] is not None:
        seen = torch.zeros(B, vocab, dtype=torch.bool, device=device)
        for row, p in enumerate(prompts):
            seen[row, list(p)] = True

    was_training = model.training
    model.eval()
    step = torch.compile(_decode_step, mode="reduce-overhead" if device.type == "cuda" else None) if compile \
        else _decode_step
    try:
        logits, cache, key_valid, next_position = prefill(model, prompts, N, pad_id, reuse_cache=compile)
        token, logprob, model_logprob = _pick(logits, seen, uniforms[0], c)
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
    return _pick(forward_last(model, cache, token[:, None], position, slot, key_valid), seen, uniforms, controls)


# ----------------------------------------------------------------------------------------------
# Convenience wrappers


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


def teacher_forced_logprobs(model, prompts: list, samples: Samples, pad_id: int = 0) -> torch.Tensor:
    """Log-probabilities (B, N) of the sampled tokens under the model's full forward over prompt +
    sample, at temperature 1, with gradient when enabled; 0 where samples.mask is False. This is the
    policy's log-likelihood that policy gradients differentiate.

    The LM head runs only at the positions that predict a sampled token (as models.target_nll does):
    prompts and the padding after EOS are skipped, most of the work of a 50k-way softmax on short texts."""
    model = _unwrap(model)  # a peft model: its LoRA layers stay in place
    ids, valid = left_pad(prompts, pad_id, samples.tokens.device)
    P = ids.shape[1]
    ids = torch.cat([ids, samples.tokens], dim=1)
    attention = torch.cat([valid, samples.mask], dim=1)
    hidden = model.get_decoder()(input_ids=ids, attention_mask=attention.long(),
                                 position_ids=positions(attention)).last_hidden_state[:, P - 1:-1]  # (B, N, C)
    logits = model.get_output_embeddings()(hidden[samples.mask]).float()                             # (M, V)
    logp = logits.log_softmax(-1).gather(1, samples.tokens[samples.mask][:, None]).squeeze(1)        # (M,)
    return torch.zeros(samples.tokens.shape, device=logp.device).masked_scatter(samples.mask, logp)


# ----------------------------------------------------------------------------------------------
# Sampling a run folder (`advgen sample`)


def parse_condition(text, conditioned: list) -> dict:
    """'department=Dresses,rating=5' -> {'department': 'Dresses', 'rating': '5'}, checked against the
    fields the run was trained to condition on."""
    values = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name or not value.strip():
            raise AdvgenError(f"--condition: expected field=value, got {part!r}")
        if name not in conditioned:
            raise AdvgenError(f"--condition: the run was not trained on {name!r}; its condition fields are "
                              f"{', '.join(conditioned) or 'none'}")
        values[name] = value.strip()
    return values


def sample_batches(model, tokenizer, prompts: list, max_new_tokens: int, batch_size: int = 64, seed: int = 0,
                   **controls):
    """Yield (start, Samples) for consecutive batches of prompts; the batch starting at prompt `start` is
    drawn with seed + start."""
    for start in range(0, len(prompts), batch_size):
        yield start, generate(model, prompts[start:start + batch_size], max_new_tokens, eos_id=tokenizer.eos_token_id,
                              pad_id=tokenizer.pad_token_id, seed=seed + start, **controls)


def sample_run(run, out, n: int, condition=None, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
               repetition_penalty=1.0, max_new_tokens=None, batch_size=64, seed=0, device="auto",
               compile=False) -> Path:
    """Sample n texts from the generator of a run folder into a JSONL file, written atomically.

    Prompts follow the run's task: condition fields given in `condition` are fixed; the others, and the
    source text of source-conditioned runs, come from the run's test split in a seeded order."""
    from advgen import data, models
    from advgen.runlog import atomic, progress

    if n < 1 or batch_size < 1:
        raise AdvgenError("--n and --batch-size must be positive")
    check_controls(temperature, top_k, top_p, min_p, repetition_penalty)
    dev = models.resolve_device(device)
    cfg, model, tokenizer = models.load_run(run)
    fixed = parse_condition(condition, cfg.condition)
    records = data.load_splits(cfg)["test"]
    order = random.Random(seed).sample(range(len(records)), len(records))
    rows = [{**records[order[i % len(records)]], **fixed} for i in range(n)]
    prompts = [data.prompt_ids(tokenizer, r, cfg.field, cfg.condition, cfg.source, cfg.max_source_tokens) for r in rows]
    batches = sample_batches(model.to(dev), tokenizer, prompts, max_new_tokens or cfg.max_target_tokens, batch_size,
                             seed, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                             repetition_penalty=repetition_penalty, compile=compile)
    with atomic(out) as tmp, open(tmp, "w") as f, progress(n, "sample", unit="text") as bar:
        for start, s in batches:
            for i, text in enumerate(decode(tokenizer, s)):
                r = rows[start + i]
                row = {"text": text, "condition": {c: r[c] for c in cfg.condition}}
                if cfg.source:
                    row["source"] = r[cfg.source]
                length = int(s.mask[i].sum())
                row.update(tokens=length, finished=bool(length and s.tokens[i, length - 1] == tokenizer.eos_token_id),
                           logprob=round(float(s.logprobs[i].sum()), 4),
                           model_logprob=round(float(s.model_logprobs[i].sum()), 4))
                f.write(json.dumps(row) + "\n")
            bar.update(len(s.tokens))
    return Path(out)
