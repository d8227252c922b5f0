"""Evaluation metrics over token sequences."""
import math
from collections import Counter


def unigram_perplexity(train: list, test: list, vocab_size: int) -> float:
    """Perplexity of `test` token sequences under an add-one-smoothed unigram model fit on `train`:
    the baseline a language model must beat."""
    counts = Counter(t for seq in train for t in seq)
    total = sum(counts.values()) + vocab_size
    nll = -sum(math.log((counts[t] + 1) / total) for seq in test for t in seq)
    return math.exp(nll / sum(len(seq) for seq in test))


def perplexity(nll: float) -> float:
    """exp(mean NLL in nats), infinite instead of overflowing for a diverged model."""
    return math.exp(nll) if nll < 700 else math.inf
