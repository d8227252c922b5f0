"""Rewards -> advantages for the policy-gradient (REINFORCE) generator update.

The loss is -sum_i advantages_i * log p(sample_i); advantages_i = rewards_i - baseline_i. A baseline
leaves the gradient unbiased as long as baseline_i does not depend on sample i (E[grad log p] = 0),
and lowers its variance the closer it is to the expected reward. Kinds:

    none           baseline 0 (plain REINFORCE)
    ema            exponential moving average of the batch mean reward over *previous* batches
    loo            leave-one-out (RLOO, Kool et al. 2019): mean reward of the other k-1 samples of the prompt
    self-critical  reward of the greedy decode of the same prompt (Rennie et al. 2017)

Rewards are a (B,) tensor laid out as a (prompts, k) grid flattened row-major: samples i*k .. i*k+k-1
share prompt i. Optional whitening, (a - mean) / (std + eps) over the batch, follows PPO/TRL practice;
it rescales the gradient and, through the batch mean (which depends on every sample), adds a small
O(1/B) bias.
"""
import torch

from advgen.config import BASELINES as KINDS
from advgen.errors import AdvgenError


def ema_update(ema, rewards: torch.Tensor, decay: float) -> float:
    """The EMA after seeing `rewards`; it starts at the first batch's mean (ema None), so no zero-init bias."""
    mean = rewards.mean().item()
    return mean if ema is None else decay * float(ema) + (1 - decay) * mean


def leave_one_out(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) -> (B,) mean reward of the other k-1 samples of the same prompt."""
    grid = rewards.view(-1, k)  # (prompts, k)
    return ((grid.sum(1, keepdim=True) - grid) / (k - 1)).reshape(-1)


def per_sample(greedy_rewards: torch.Tensor, batch: int, k: int) -> torch.Tensor:
    """(B // k,) one value per prompt, or (B,) already per sample -> (B,)."""
    greedy_rewards = torch.as_tensor(greedy_rewards).detach()
    if greedy_rewards.dim() == 1 and len(greedy_rewards) == batch // k:
        return greedy_rewards.repeat_interleave(k)
    if greedy_rewards.dim() == 1 and len(greedy_rewards) == batch:
        return greedy_rewards
    raise AdvgenError(f"greedy_rewards must have shape ({batch // k},) or ({batch},), got {tuple(greedy_rewards.shape)}")


def whitened(a: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(a - mean) / (std + eps) over the batch; population std, so a batch of one gives 0, not NaN."""
    return (a - a.mean()) / (a.std(correction=0) + eps)


def advantages(rewards: torch.Tensor, kind: str, *, k: int = 1, greedy_rewards=None, ema=None,
               decay: float = 0.9, whiten: bool = False, eps: float = 1e-8):
    """(B,) rewards -> (advantages (B,), baseline (B,), new_ema).

    k: samples per prompt (B must be a multiple). greedy_rewards: for self-critical, (B // k,) or (B,).
    ema: the EMA of the batch mean reward over previous batches (None before the first batch); new_ema
    includes this batch and is returned for every kind, so the caller can always store and log it.

    The ema kind uses only the previous batches' EMA, never this batch: the first batch (ema None) gets
    baseline 0, i.e. plain REINFORCE. Using its own mean instead would make each baseline depend on the
    sample it multiplies and bias the gradient (by a factor (B-1)/B); one unbaselined batch costs only
    variance. The returned baseline is the value subtracted before any whitening. Rewards are detached.
    """
    if kind not in KINDS:
        raise AdvgenError(f"unknown baseline '{kind}'; choose one of {', '.join(KINDS)}")
    rewards = torch.as_tensor(rewards).detach()
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if rewards.dim() != 1 or len(rewards) == 0:
        raise AdvgenError(f"rewards must be a non-empty (B,) tensor, got shape {tuple(rewards.shape)}")
    batch = len(rewards)
    if k < 1 or batch % k:
        raise AdvgenError(f"the batch of {batch} rewards is not a whole number of groups of k={k} samples per prompt")
    if not 0 <= decay <= 1:
        raise AdvgenError(f"the EMA decay must be in [0, 1], got {decay}")

    if kind == "none" or (kind == "ema" and ema is None):
        baseline = torch.zeros_like(rewards)
    elif kind == "ema":
        baseline = torch.full_like(rewards, float(ema))
    elif kind == "loo":
        if k < 2:
            raise AdvgenError(f"the loo baseline needs k >= 2 samples per prompt, got k={k}")
        baseline = leave_one_out(rewards, k)
    else:
        if greedy_rewards is None:
            raise AdvgenError("the self-critical baseline needs greedy_rewards (the greedy decode's reward per prompt)")
        baseline = per_sample(greedy_rewards, batch, k).to(rewards)

    a = rewards - baseline  # (B,)
    return (whitened(a, eps) if whiten else a), baseline, ema_update(ema, rewards, decay)


# ----------------------------------------------------------------------------------------------
# Per-token returns (dense rewards): the same kinds, taken at each position over the samples that reach it


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, N) per-token rewards -> (B, N) returns G_t = sum over s >= t of gamma^(s-t) r_s, within each row's
    tokens (mask True on a prefix of each row); 0 where masked."""
    rewards, mask = rewards.detach().float(), mask.to(rewards.device).float()
    returns, running = torch.zeros_like(rewards), torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def position_advantages(returns: torch.Tensor, mask: torch.Tensor, kind: str, *, k: int = 1, ema=None,
                        decay: float = 0.9, whiten: bool = False, eps: float = 1e-8):
    """(B, N) per-token returns -> (advantages (B, N), baseline (B, N), new_ema: a list of N floats), 0 where
    masked. The kinds of `advantages`, each taken at position t over the samples that have a token there:

        none  baseline 0;
        ema   a moving average per position of previous batches' mean return there (None before the first batch:
              baseline 0; a position no sample of a batch reached keeps its value);
        loo   the mean return at t of the other samples of the prompt that reach t (0 where none does): it never
              depends on the sample it is subtracted from, so the gradient stays unbiased.

    self-critical has no per-position form here (a greedy decode is one sequence, not a return per position).
    Whitening uses the mean and spread over the batch's tokens."""
    if kind not in ("none", "ema", "loo"):
        raise AdvgenError(f"per-position baselines are none, ema and loo, not '{kind}'")
    returns, m = returns.detach().float(), mask.to(returns.device).float()
    batch, length = returns.shape
    if k < 1 or batch % k:
        raise AdvgenError(f"the batch of {batch} returns is not a whole number of groups of k={k} samples per prompt")
    returns = returns * m
    if kind == "loo":
        if k < 2:
            raise AdvgenError(f"the loo baseline needs k >= 2 samples per prompt, got k={k}")
        g, n = returns.view(-1, k, length), m.view(-1, k, length)
        others = n.sum(1, keepdim=True) - n
        baseline = ((g.sum(1, keepdim=True) - g) / others.clamp(min=1)).reshape(batch, length)
    elif kind == "ema" and ema is not None:
        baseline = torch.tensor(ema, dtype=returns.dtype, device=returns.device)[None].expand(batch, length)
    else:
        baseline = torch.zeros_like(returns)
    baseline = baseline * m
    a = returns - baseline
    if whiten:
        valid = a[m.bool()]
        a = (a - valid.mean()) / (valid.std(correction=0) + eps) * m
    count = m.sum(0)
    mean = returns.sum(0) / count.clamp(min=1)
    old = torch.zeros(length) if ema is None else torch.tensor(ema, dtype=torch.float)
    new = mean.cpu() if ema is None else torch.where(count.cpu() > 0, decay * old + (1 - decay) * mean.cpu(), old)
    return a, baseline, new.tolist()
