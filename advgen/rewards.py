"""Rewards: plain functions from decoded texts to one float per text, without gradient; the mixer combines them.

- realism: P(real), class 1 of the discriminator (class 0 is "generated");
- style:   P(target label), the target fixed or each sample's own condition;
- click:   P(engaged), class 1 of the click model (feedback count at or above its threshold);
- content: the cosine similarity of the sample's and its source's sentence embeddings (the packaged MiniLM,
           advgen.metrics.embed), for source-conditioned tasks: staying on the source's content.

The scorer models behind them live in advgen.scorers.
"""
import math

import torch

from advgen import metrics
from advgen.errors import AdvgenError
from advgen.scorers import Scorer, probabilities

COMPONENTS = ("realism", "style", "click", "content")


def realism(scorer: Scorer, texts: list, batch_size: int = 64) -> torch.Tensor:
    """(N,) P(real) from the discriminator."""
    return probabilities(scorer, texts, batch_size)[:, 1]


def prefix_realism(scorer: Scorer, tokenizer, samples, batch_size: int = 64) -> torch.Tensor:
    """(B, N) P(real) of every prefix y_1..y_t of each sample (`samples`: sampling.Samples), 0 where masked: the
    per-token rewards of dense training. A prefix is decoded as the whole sample is (special tokens dropped), so
    the last one scores the sample itself; a prefix may end inside a word. Equal prefix texts are scored once."""
    prefixes = [[tokenizer.decode(row[:t + 1], skip_special_tokens=True).strip() for t in range(sum(keep))]
                for row, keep in zip(samples.tokens.tolist(), samples.mask.tolist())]
    unique = sorted({text for row in prefixes for text in row})
    p = dict(zip(unique, realism(scorer, unique, batch_size).tolist())) if unique else {}
    out = torch.zeros(samples.tokens.shape)
    for i, row in enumerate(prefixes):
        out[i, :len(row)] = torch.tensor([p[text] for text in row])
    return out


def style(scorer: Scorer, texts: list, targets, batch_size: int = 64) -> torch.Tensor:
    """(N,) P(target label); `targets` is one label for all texts or a list with one per text."""
    labels = scorer.info["labels"]
    targets = [targets] * len(texts) if isinstance(targets, str) else [str(t) for t in targets]
    if len(targets) != len(texts):
        raise AdvgenError(f"style: {len(targets)} targets for {len(texts)} texts")
    unknown = sorted(set(targets) - set(labels))
    if unknown:
        raise AdvgenError(f"style target {unknown[0]!r} is not a label of the style scorer ({', '.join(labels)})")
    index = torch.tensor([labels.index(t) for t in targets], dtype=torch.long)
    return probabilities(scorer, texts, batch_size).gather(1, index[:, None])[:, 0]


def click(scorer: Scorer, texts: list, batch_size: int = 64) -> torch.Tensor:
    """(N,) P(engaged) from the click model."""
    return probabilities(scorer, texts, batch_size)[:, 1]


def content(encoder, texts: list, sources: list) -> torch.Tensor:
    """(N,) cosine similarity of each text's sentence embedding with its source's; `encoder` is
    advgen.metrics.encoder()'s (model, tokenizer). Embeddings are unit vectors, so this is their dot product."""
    if len(texts) != len(sources):
        raise AdvgenError(f"content: {len(sources)} sources for {len(texts)} texts")
    if not texts:
        return torch.zeros(0)
    both = metrics.embed(list(texts) + list(sources), *encoder)
    return torch.from_numpy((both[:len(texts)] * both[len(texts):]).sum(1)).float()


class RewardMixer:
    """total = sum over components of weight * reward / running std of that component.

    Why scale and not centre: the components live on different scales (P(real) collapses towards 0
    as the discriminator wins, a style probability is near 1 for easy labels), so each is divided
    by its own spread to make the weights mean what they say. Centring is the baselines' job
    (`advgen.baselines`): a mixer that also subtracted a running mean would be a hidden moving-average
    baseline, and "no baseline" would no longer be plain REINFORCE. The spread is an exponential
    moving average over batches (`decay`), so it follows the discriminator as it learns; the first
    batch sets it. The spread is floored at `min_std` (all three components are probabilities, and
    a spread under 0.01 means "constant"), so a constant component is not blown up. Components whose
    weight is 0 are neither needed nor scored.
    """

    def __init__(self, weights: dict, decay: float = 0.99, min_std: float = 0.01):
        unknown = set(weights) - set(COMPONENTS)
        if unknown:
            raise AdvgenError(f"unknown reward component(s) {sorted(unknown)}; choose from {', '.join(COMPONENTS)}")
        if any(not math.isfinite(w) or w < 0 for w in weights.values()):
            raise AdvgenError(f"reward weights must be finite and non-negative, got {weights}")
        if not any(w > 0 for w in weights.values()):
            raise AdvgenError(f"reward weights are all zero ({weights}): nothing to train for")
        self.weights = {k: float(w) for k, w in weights.items() if w > 0}
        self.decay, self.min_std = decay, min_std
        self.var = {}  # component -> running variance

    def __call__(self, components: dict, update: bool = True) -> tuple:
        """{component: (N,) rewards} -> (total (N,), {component: (N,) raw rewards}).

        update=False scales by the current spreads without folding this batch into them (e.g. the greedy
        decodes of a self-critical baseline); before any update it scales by this batch's own spread."""
        missing = set(self.weights) - set(components)
        if missing:
            raise AdvgenError(f"reward component(s) {sorted(missing)} have a weight but were not scored")
        total = 0.0
        for name, weight in self.weights.items():
            r = components[name].detach().float()
            batch_var = r.var(unbiased=False).item() if r.numel() > 1 else 0.0
            old = self.var.get(name)
            var = batch_var if old is None else self.decay * old + (1 - self.decay) * batch_var
            if update:
                self.var[name] = var
            elif old is not None:
                var = old
            total = total + weight * r / max(math.sqrt(var), self.min_std)
        return total, {name: components[name] for name in self.weights}

    def scale(self, name: str) -> float:
        """The factor a component's raw reward enters the total with: its weight over its running spread."""
        return self.weights[name] / max(math.sqrt(self.var[name]), self.min_std)

    def state_dict(self) -> dict:
        return {"var": dict(self.var)}

    def load_state_dict(self, state: dict) -> None:
        self.var = dict(state["var"])
