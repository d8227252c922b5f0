"""The sampler's per-step kernels: logits -> candidate weights -> a floor that filters them -> one draw.

    logits --candidates--> weights --floor_of--> floor, kept mass --draw--> token, log-probs

Sampling controls follow HF `generate`'s definitions and order: repetition penalty, temperature, top-k,
top-p, min-p. Each may be a scalar or a per-row tensor, so one batch can sweep temperatures; `controls`
turns them into a `Controls` value once per call, and `pick` makes one step's choice from it.
Top-p and min-p both keep the weights at or above a floor. Top-p never sorts the vocabulary: a mass
histogram over the floats' bits finds the exact floor of HF's sorted-cumsum definition. The draw never
applies the floor to the whole vocabulary either: rejection sampling proposes from all the weights and
takes the first proposal at or above the floor. With sync_free nothing reads a value back to the host
(what CUDA graphs need).
"""
import sys
from typing import NamedTuple, Optional

import torch

from advgen.errors import AdvgenError

_HIGH_BUCKETS = (0x3F800000 >> 16) + 1  # high 16 bits of the floats in [0, 1]: 1.0 is 0x3F800000
_SORT_BELOW = 4096  # candidate sets smaller than this find the nucleus by sorting; larger ones by histograms
PROPOSALS = 8  # rejection-sampling proposals per row and step; one more uniform is kept for the direct draw


class Controls(NamedTuple):
    """The sampling controls of one batch as (B, 1) tensors, or None / 0 where a filter is off, plus the
    host-side switches that fix the shape of the step (so a compiled step is specialised on them)."""
    greedy: torch.Tensor                  # (B, 1) bool: rows at temperature 0
    any_greedy: bool
    all_greedy: bool
    temperature: Optional[torch.Tensor]   # (B, 1), or None when every row is at 0 or 1
    top_k: int                            # the largest k of the batch (0: off)
    k_per_row: Optional[torch.Tensor]     # (B, 1) when rows differ in k
    top_p: Optional[torch.Tensor]         # (B, 1) when some row has top_p < 1
    min_p: Optional[torch.Tensor]         # (B, 1) when some row has min_p > 0
    penalty: Optional[torch.Tensor]       # (B, 1) when some row has a repetition penalty != 1
    sync_free: bool                       # never read a value back to the host (CUDA)


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


def check_controls(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0) -> None:
    """Raise AdvgenError, naming the setting, for a control outside its range (scalars or per-row values)."""
    rules = [("temperature", temperature, lambda t: t >= 0, ">= 0"), ("top_k", top_k, lambda t: t >= 0, ">= 0"),
             ("top_p", top_p, lambda t: (t > 0) & (t <= 1), "in (0, 1]"),
             ("min_p", min_p, lambda t: (t >= 0) & (t <= 1), "in [0, 1]"),
             ("repetition_penalty", repetition_penalty, lambda t: t > 0, "> 0")]
    for name, value, ok, expected in rules:
        if not bool(ok(torch.as_tensor(value, dtype=torch.float64)).all()):
            raise AdvgenError(f"--{name.replace('_', '-')} must be {expected}, got {value}")


def controls(batch, vocab, device, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
             sync_free=True) -> Controls:
    """Scalars or per-row values -> Controls. sync_free: the pick may not read values back to the host."""
    check_controls(temperature, top_k, top_p, min_p, repetition_penalty)
    temp = per_row(temperature, batch, device)
    k = per_row(top_k, batch, device, torch.long)
    k = torch.where((k == 0) | (k > vocab), vocab, k)
    p = per_row(top_p, batch, device)
    mp = per_row(min_p, batch, device)
    pen = per_row(repetition_penalty, batch, device)
    k_max = int(k.max())
    return Controls(
        greedy=temp == 0, any_greedy=bool((temp == 0).any()), all_greedy=bool((temp == 0).all()),
        temperature=None if bool(((temp == 0) | (temp == 1)).all()) else torch.where(temp == 0, 1.0, temp),
        top_k=0 if bool((k == vocab).all()) else k_max,
        k_per_row=None if bool((k == k_max).all()) else k,
        top_p=p if bool((p < 1).any()) else None,
        min_p=mp if bool((mp > 0).any()) else None,
        penalty=pen if bool((pen != 1).any()) else None,
        sync_free=sync_free)


def pick(logits, seen, uniforms, c: Controls):
    """One step's choice: (token (B,), log-prob under the sampling distribution, under the model at T=1)."""
    scores = logits if c.penalty is None else penalize_repeats(logits, seen, c.penalty)
    if c.all_greedy:
        token, logprob = scores.argmax(-1), torch.zeros_like(logits[:, 0])
    else:
        weights, ids = candidates(scores, c.temperature, c.top_k, c.k_per_row)
        floor, kept = floor_of(weights, c.top_p, c.min_p, c.sync_free)
        index, logprob, total = draw(weights, uniforms, floor, kept, c.sync_free)
        if ids is None and c.temperature is None and c.penalty is None and not c.any_greedy:
            # the weights are the model's own distribution: no second pass over the logits for its normaliser
            model_logprob = weights.gather(1, index[:, None]).squeeze(1).log() - total.log()
            return index, logprob, model_logprob
        token = index if ids is None else ids.gather(1, index[:, None]).squeeze(1)
        if c.any_greedy:
            g = c.greedy.squeeze(1)
            token, logprob = torch.where(g, scores.argmax(-1), token), logprob.masked_fill(g, 0.0)
    return token, logprob, logits.gather(1, token[:, None]).squeeze(1) - logits.logsumexp(-1)
