import math

import pytest
import torch

from advgen.baselines import KINDS, advantages, discounted_returns, position_advantages
from advgen.errors import AdvgenError


def t(values):
    return torch.tensor(values, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Arithmetic on hand-computed inputs


def test_none_is_plain_reinforce():
    adv, base, new_ema = advantages(t([1.0, -2.0, 3.0, 4.0]), "none", k=2)
    assert adv.tolist() == [1.0, -2.0, 3.0, 4.0]
    assert base.tolist() == [0.0] * 4
    assert new_ema == pytest.approx(1.5)  # the EMA is tracked for every kind; first batch: its mean


def test_ema_first_batch_uses_zero_then_previous_ema():
    adv, base, ema = advantages(t([1.0, 3.0]), "ema")
    assert base.tolist() == [0.0, 0.0] and adv.tolist() == [1.0, 3.0]
    assert ema == pytest.approx(2.0)  # starts at the first batch's mean
    adv, base, ema = advantages(t([4.0, 6.0]), "ema", ema=ema, decay=0.9)
    assert base.tolist() == [2.0, 2.0]  # the previous EMA, not this batch's mean 5
    assert adv.tolist() == [2.0, 4.0]
    assert ema == pytest.approx(0.9 * 2.0 + 0.1 * 5.0)
    _, base, ema = advantages(t([0.0, 0.0]), "ema", ema=torch.tensor(2.3), decay=0.5)  # a stored tensor works too
    assert base.tolist() == pytest.approx([2.3, 2.3]) and ema == pytest.approx(1.15)


def test_loo_is_mean_of_the_other_samples_of_the_prompt():
    adv, base, _ = advantages(t([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), "loo", k=3)
    assert base.tolist() == [4.0, 3.5, 1.5, 1.5, 1.5, 0.0]
    assert adv.tolist() == [-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]
    adv, base, _ = advantages(t([1.0, 5.0, 2.0, 2.0]), "loo", k=2)
    assert base.tolist() == [5.0, 1.0, 2.0, 2.0] and adv.tolist() == [-4.0, 4.0, 0.0, 0.0]


def test_self_critical_broadcasts_greedy_reward_over_k():
    rewards = t([1.0, 2.0, 3.0, 4.0])
    adv, base, _ = advantages(rewards, "self-critical", k=2, greedy_rewards=t([1.5, 5.0]))
    assert base.tolist() == [1.5, 1.5, 5.0, 5.0] and adv.tolist() == [-0.5, 0.5, -2.0, -1.0]
    adv, base, _ = advantages(rewards, "self-critical", k=2, greedy_rewards=t([0.0, 1.0, 2.0, 3.0]))
    assert base.tolist() == [0.0, 1.0, 2.0, 3.0] and adv.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_whitening():
    adv, base, _ = advantages(t([1.0, 3.0]), "none", whiten=True)
    assert adv.tolist() == pytest.approx([-1.0, 1.0])  # mean 2, population std 1
    adv, base, _ = advantages(t([1.0, 5.0, 2.0, 2.0]), "loo", k=2, whiten=True)
    assert adv.tolist() == pytest.approx([-math.sqrt(2), math.sqrt(2), 0.0, 0.0])  # [-4, 4, 0, 0] / sqrt(8)
    assert base.tolist() == [5.0, 1.0, 2.0, 2.0]  # the baseline is reported before whitening
    adv, _, _ = advantages(t([3.0, -1.0, 7.5, 0.25, 2.0, 9.0]), "loo", k=3, whiten=True)
    assert adv.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert adv.std(correction=0).item() == pytest.approx(1.0)
    assert advantages(t([4.0]), "none", whiten=True)[0].tolist() == [0.0]  # one sample: 0, not NaN


def test_no_gradient_flows_through_advantages():
    rewards = t([1.0, 2.0, 3.0, 5.0]).requires_grad_()
    for kind in KINDS:
        adv, base, _ = advantages(rewards, kind, k=2, greedy_rewards=t([1.0, 1.0]), ema=1.0)
        assert not adv.requires_grad and not base.requires_grad


def test_bad_input_raises():
    r = t([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(AdvgenError, match="k >= 2"):
        advantages(r, "loo", k=1)
    with pytest.raises(AdvgenError, match="k=3"):
        advantages(r, "none", k=3)
    with pytest.raises(AdvgenError, match="unknown baseline"):
        advantages(r, "mean", k=2)
    with pytest.raises(AdvgenError, match="greedy_rewards"):
        advantages(r, "self-critical", k=2, greedy_rewards=t([1.0, 2.0, 3.0]))
    with pytest.raises(AdvgenError, match="greedy_rewards"):
        advantages(r, "self-critical", k=2)
    with pytest.raises(AdvgenError, match="non-empty"):
        advantages(r.view(2, 2), "none", k=2)


# ----------------------------------------------------------------------------------------------
# A toy bandit, enumerated exactly: one "prompt" is k draws a_1..a_k from softmax(logits); the
# estimate is (1/k) sum_i A_i grad log p(a_i), with grad_logits log p(a) = onehot(a) - p.

LOGITS = t([0.5, -0.2, 0.1, 0.8, -0.5])
K = 3


def exact_estimates(reward, kind, greedy=None, **kw):
    """Every k-tuple of actions with its probability and its gradient estimate. Each tuple is its own
    batch (one prompt, k samples), so batch-wide quantities (the first batch's mean) are per tuple.
    greedy: the tuple's rewards (K,) -> greedy_rewards."""
    p = LOGITS.softmax(0)
    tuples = torch.cartesian_prod(*[torch.arange(len(p))] * K)  # (5**K, K)
    prob = p[tuples].prod(1)  # (T,)
    adv = torch.stack([advantages(r, kind, k=K, greedy_rewards=greedy and greedy(r), **kw)[0]
                       for r in reward[tuples]])  # (T, K)
    score = torch.nn.functional.one_hot(tuples, len(p)).double() - p  # (T, K, 5)
    return prob, (adv.unsqueeze(-1) * score).mean(1)  # (T,), (T, 5)


def true_gradient(reward):
    logits = LOGITS.clone().requires_grad_()
    (logits.softmax(0) @ reward).backward()
    return logits.grad


REWARD = t([1.0, -0.5, 2.0, 0.3, -1.2])


@pytest.mark.parametrize("kind, kw", [
    ("none", {}),
    ("loo", {}),
    ("ema", {"ema": 0.7}),
    ("ema", {}),  # first batch: baseline 0
    ("self-critical", {"greedy": lambda r: REWARD[LOGITS.argmax()].view(1)}),  # greedy decode: the argmax action
])
def test_expected_estimate_is_the_true_gradient(kind, kw):
    prob, est = exact_estimates(REWARD, kind, **kw)
    assert prob.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(prob @ est, true_gradient(REWARD), rtol=1e-10, atol=1e-12)


def test_exact_check_detects_a_baseline_that_sees_its_own_sample():
    # A "greedy" reward that is really the mean of the k samples includes each sample's own reward:
    # the expectation shrinks by (k - 1) / k, and the exact check must see it.
    prob, est = exact_estimates(REWARD, "self-critical", greedy=lambda r: r.mean().view(1))
    assert not torch.allclose(prob @ est, true_gradient(REWARD), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(prob @ est, true_gradient(REWARD) * (K - 1) / K)


def test_loo_and_ema_lower_the_variance_under_a_common_offset():
    reward = 10.0 + 0.1 * REWARD
    mean_reward = (LOGITS.softmax(0) @ reward).item()

    def variance(kind, **kw):  # trace of the covariance of the estimate, exactly
        prob, est = exact_estimates(reward, kind, **kw)
        return (prob @ ((est - prob @ est) ** 2).sum(1)).item()

    none, loo, ema = variance("none"), variance("loo"), variance("ema", ema=mean_reward)
    assert loo < 0.01 * none and ema < 0.01 * none
    assert variance("ema", ema=0.0) == pytest.approx(none)  # an EMA of 0 is plain REINFORCE


# ----------------------------------------------------------------------------------------------
# Per-token returns and per-position baselines (dense rewards)


def test_discounted_returns_sum_the_discounted_rewards_of_each_rows_own_tokens():
    torch.manual_seed(0)
    rewards, lengths, gamma = torch.rand(5, 6, dtype=torch.float64), [6, 3, 1, 0, 4], 0.23
    mask = torch.arange(6)[None] < torch.tensor(lengths)[:, None]
    want = torch.zeros(5, 6, dtype=torch.float64)
    for i, n in enumerate(lengths):
        for t in range(n):
            want[i, t] = sum(gamma ** (s - t) * rewards[i, s] for s in range(t, n))
    torch.testing.assert_close(discounted_returns(rewards, mask, gamma), want.float())
    assert torch.equal(discounted_returns(rewards, mask, 0.0), (rewards * mask).float())


def test_per_position_loo_averages_the_other_samples_that_reach_the_position():
    returns = t([[1.0, 2.0, 3.0], [5.0, 4.0, 0.0], [2.0, 0.0, 0.0], [7.0, 8.0, 9.0]])
    mask = returns != 0
    adv, base, ema = position_advantages(returns, mask, "loo", k=2)
    # prompt 0: samples 0 and 1 reach t=0,1; only sample 0 reaches t=2 (no other sample there: baseline 0)
    assert base[:2].tolist() == [[5.0, 4.0, 0.0], [1.0, 2.0, 0.0]]
    assert base[2:].tolist() == [[7.0, 0.0, 0.0], [2.0, 0.0, 0.0]]  # prompt 1: sample 2 stops after one token
    assert adv.tolist() == [[-4.0, -2.0, 3.0], [4.0, 2.0, 0.0], [-5.0, 0.0, 0.0], [5.0, 8.0, 9.0]]
    assert ema == pytest.approx([15.0 / 4, 14.0 / 3, 12.0 / 2])  # the mean over the samples that reach t
    # one position, every sample there: the sequence-level leave-one-out
    one = returns[:, :1]
    assert torch.equal(position_advantages(one, torch.ones_like(one).bool(), "loo", k=2)[0][:, 0].double(),
                       advantages(one[:, 0], "loo", k=2)[0])


def test_per_position_ema_keeps_positions_no_sample_reached():
    returns, mask = t([[2.0, 4.0, 0.0], [4.0, 0.0, 0.0]]), t([[1, 1, 0], [1, 0, 0]]).bool()
    adv, base, ema = position_advantages(returns, mask, "ema", k=1)  # first batch: baseline 0
    assert torch.equal(base, torch.zeros(2, 3)) and ema == [3.0, 4.0, 0.0]
    adv, base, new = position_advantages(returns, mask, "ema", k=1, ema=[1.0, 2.0, 5.0], decay=0.5)
    assert base.tolist() == [[1.0, 2.0, 0.0], [1.0, 0.0, 0.0]] and adv.tolist() == [[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]
    assert new == [2.0, 3.0, 5.0]
    with pytest.raises(AdvgenError, match="none, ema and loo"):
        position_advantages(returns, mask, "self-critical", k=1)


# A two-token policy, enumerated exactly: token 1 from softmax(L1), then, unless it is the end token 0, token 2
# from softmax(L2). Every prefix has a reward; with gamma 1 the per-token estimate
# (1/k) sum_i sum_t A_it grad log p(y_it) must have the gradient of E[sum_t r(y_1..t)] as its expectation.
L1, L2 = t([0.3, -0.4, 0.9]), t([0.2, 0.5, -0.6])
PREFIX_REWARD = {(0,): 0.4, (1,): -1.0, (2,): 2.0, (1, 0): 0.5, (1, 1): 1.5, (1, 2): -0.7, (2, 0): 0.1,
                 (2, 1): 3.0, (2, 2): -2.0}


def sequences():
    seqs = [(0,)] + [(a, b) for a in (1, 2) for b in (0, 1, 2)]
    p1, p2 = L1.softmax(0), L2.softmax(0)
    return seqs, t([p1[s[0]] * (p2[s[1]] if len(s) > 1 else 1) for s in seqs])


def per_token_estimate(pair, kind, **kw):
    rewards, mask = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.bool)
    for i, s in enumerate(pair):
        for j in range(len(s)):
            rewards[i, j], mask[i, j] = PREFIX_REWARD[s[:j + 1]], True
    adv = position_advantages(discounted_returns(rewards, mask, 1.0), mask, kind, k=2, **kw)[0].double()
    grad = torch.zeros(6, dtype=torch.float64)
    for i, s in enumerate(pair):
        grad[:3] += adv[i, 0] * (torch.nn.functional.one_hot(torch.tensor(s[0]), 3) - L1.softmax(0))
        if len(s) > 1:
            grad[3:] += adv[i, 1] * (torch.nn.functional.one_hot(torch.tensor(s[1]), 3) - L2.softmax(0))
    return grad / 2


@pytest.mark.parametrize("kind, kw", [("none", {}), ("loo", {}), ("ema", {"ema": [0.8, -0.3]})])
def test_per_position_baselines_leave_the_per_token_gradient_unbiased(kind, kw):
    seqs, prob = sequences()
    expected = sum(prob[a] * prob[b] * per_token_estimate((seqs[a], seqs[b]), kind, **kw)
                   for a in range(len(seqs)) for b in range(len(seqs)))
    logits = torch.cat([L1, L2]).clone().requires_grad_()
    p1, p2 = logits[:3].softmax(0), logits[3:].softmax(0)
    value = sum(p1[s[0]] * (p2[s[1]] if len(s) > 1 else 1) * sum(PREFIX_REWARD[s[:j + 1]] for j in range(len(s)))
                for s in seqs)
    value.backward()
    torch.testing.assert_close(expected, logits.grad, rtol=1e-6, atol=1e-7)  # float32 inside position_advantages
