"""Quality and diversity metrics of generated text: pure functions over lists of strings or token lists.

Tokenization. Strings are split into tokens by `tokenize`: "whitespace" (`str.split`, the
convention of the COCO benchmark files, whose captions are lower-cased with words separated by
spaces), "words" (runs of word characters and single punctuation marks, case kept), "treebank"
(NLTK's TreebankWordTokenizer, which also splits the final period of a caption: the protocol of
the published COCO tables), or any callable str -> list of str. Token lists are used as they are. Samples and references must be
given in the same form.

Definitions (S = samples, R = references; an n-gram is n consecutive tokens of one sentence):
- BLEU-n: each sample scored by NLTK's `sentence_bleu` against all of R, with uniform weights
  (1/n, ..., 1/n) and smoothing method 1 (epsilon 0.1 added to zero match counts), then averaged
  over S, as Texygen and "Language GANs Falling Short" do. The brevity penalty uses the
  reference length closest to the sample's (the shorter one on a tie).
- Self-BLEU-n: the same, each sample scored against all the OTHER samples, never itself.
  A duplicated sample does count as a reference of its copies.
- distinct-n: distinct n-grams / all n-grams, pooled over S.
- entropy-n: Shannon entropy, in nats, of the frequency distribution of the n-grams pooled over S.
- unique: distinct samples (as token sequences) / |S|.
- MS-Jaccard-n (Montahaei et al. 2019): for each k <= n, the n-gram counts of each side divided
  by its number of sentences; sum of minima / sum of maxima; then the geometric mean over k = 1..n.
- FED: Frechet distance between Gaussians fitted to sentence embeddings of S and of R,
  |mu_S - mu_R|^2 + Tr(C_S + C_R - 2 (C_S C_R)^(1/2)). Embeddings default to all-MiniLM-L6-v2
  (mean pooling, L2-normalised, as sentence-transformers does) from the packaged encoder.
- MAUVE: `mauve-text`'s `compute_mauve` on the same embeddings, R as P, S as Q, its defaults
  except one k-means run instead of five.
- NLL: mean negative log-likelihood per target token (EOS included) of references under a generator.

Paired metrics (conditional tasks: each sample against its own item's reference), by the maintained
implementations users cite, on sacrebleu's 0-100 scale: sacrebleu's corpus BLEU and the mean of its sentence
BLEU (13a tokenization; sentence BLEU with exponential smoothing, sacrebleu's defaults), sacrebleu's corpus chrF,
rouge-score's ROUGE-L F1 (no stemming) averaged, and exact match (stripped, lower-cased) as a percentage.

Tags (a short categorical target, such as a product's class from its review): n samples per item; accuracy is
the share of samples equal to the item's tag, and precision@k / recall@k rank the distinct generated tags of an
item by frequency, then by log-probability (`rank_tags`).
"""
import functools
import math
import re
from collections import Counter

import numpy as np
import torch

from advgen.errors import AdvgenError

EPSILON = 0.1  # NLTK SmoothingFunction().method1
TOKENIZERS = {"whitespace": str.split, "words": re.compile(r"\w+|[^\w\s]").findall,
              "treebank": lambda text: _treebank().tokenize(text)}


@functools.lru_cache(maxsize=1)
def _treebank():
    """NLTK's Penn Treebank word tokenizer (no data download): what `nltk.word_tokenize` does to one sentence in
    the NLTK of Texygen and "Language GANs Falling Short", the tokenization of their published BLEU tables."""
    from nltk.tokenize import TreebankWordTokenizer

    return TreebankWordTokenizer()


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


# ---------------------------------------------------------------------------------------------
# tokens and n-grams

def tokens(texts: list, tokenize="whitespace") -> list:
    """Strings -> token lists with `tokenize`; token lists pass through. Mixed input is an error."""
    if not texts:
        return []
    kinds = {isinstance(t, str) for t in texts}
    if kinds == {False}:
        return [list(t) for t in texts]
    if kinds != {True}:
        raise AdvgenError("texts mix strings and token lists")
    split = TOKENIZERS.get(tokenize) if isinstance(tokenize, str) else tokenize
    if split is None:
        raise AdvgenError(f"unknown tokenize '{tokenize}' (choose {', '.join(TOKENIZERS)} or pass a function)")
    return [split(t) for t in texts]


def _same_form(samples: list, references: list) -> None:
    if samples and references and isinstance(samples[0], str) != isinstance(references[0], str):
        raise AdvgenError("samples and references differ in form: one is strings, the other token lists")


def ngram_ids(sentences: list, max_n: int) -> list:
    """Token lists -> for n = 1..max_n, (sentence index, n-gram id) of every n-gram occurrence.

    Ids are exact (no hashing): an n-gram's id is the rank of the pair (id of its first n-1
    tokens, id of its last token), so equal n-grams get equal ids across all sentences given.
    """
    vocab = {}
    lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for s in sentences for t in s), dtype=np.int64,
                      count=int(lengths.sum()))
    sentence = np.repeat(np.arange(len(sentences)), lengths)  # of each token
    end = np.repeat(np.cumsum(lengths), lengths)               # end offset of each token's sentence
    start = np.arange(len(ids))                                # n-gram start positions
    gram = ids
    out = []
    for n in range(1, max_n + 1):
        if n > 1:
            keep = start + n - 1 < end[start]
            start, gram = start[keep], gram[keep]
            gram = np.unique(gram * max(len(vocab), 1) + ids[start + n - 1], return_inverse=True)[1].ravel()
        out.append((sentence[start], gram))
    return out


def _counts(sentence, gram):
    """Occurrences -> (sentence, gram, count) of each distinct pair, sorted by sentence then gram."""
    width = int(gram.max()) + 1 if len(gram) else 1
    key, count = np.unique(sentence * width + gram, return_counts=True)
    return key // width, key % width, count


# ---------------------------------------------------------------------------------------------
# BLEU and Self-BLEU

def _closest_lengths(hyp_len, ref_len, exclude_self: bool):
    """NLTK's closest_ref_length for every hypothesis: the reference length nearest to its own,
    the shorter one on a tie; with `exclude_self` the hypotheses are the references and each
    skips itself."""
    values, counts = np.unique(ref_len, return_counts=True)
    lo = np.searchsorted(values, hyp_len, "left")   # values[:lo] < h
    hi = np.searchsorted(values, hyp_len, "right")  # values[hi:] > h
    equal = np.where(hi > lo, counts[np.minimum(lo, len(values) - 1)], 0) - int(exclude_self)
    below = np.where(lo > 0, values[np.maximum(lo - 1, 0)], -(10 ** 9))
    above = np.where(hi < len(values), values[np.minimum(hi, len(values) - 1)], 10 ** 9)
    nearest = np.where(hyp_len - below <= above - hyp_len, below, above)
    return np.where(equal > 0, hyp_len, nearest)


def _matches(hyps: list, refs, max_n: int) -> np.ndarray:
    """Clipped n-gram matches, (max_n, len(hyps)): sum over the hypothesis's n-grams of
    min(count in it, max count in any one reference). refs None: the references of each
    hypothesis are all the other hypotheses."""
    corpus = hyps if refs is None else list(refs) + list(hyps)
    first_hyp = 0 if refs is None else len(refs)
    out = np.zeros((max_n, len(hyps)))
    for n, (sentence, gram) in enumerate(ngram_ids(corpus, max_n)):
        s, g, c = _counts(sentence, gram)
        if not len(g):
            continue
        if refs is None:
            # Per n-gram, the largest count in any other sentence: the runner-up for the sentence
            # holding the largest count (equal to it on a tie), the largest for all others.
            order = np.lexsort((-c, g))
            s, g, c = s[order], g[order], c[order]
            first = np.r_[True, g[1:] != g[:-1]]
            group = np.cumsum(first) - 1
            top = np.flatnonzero(first)
            after = np.minimum(top + 1, len(g) - 1)
            second = np.where((top + 1 < len(g)) & (g[after] == g[top]), c[after], 0)
            other = np.where(first, second[group], c[top][group])
        else:
            is_ref = s < first_hyp
            ref_max = np.zeros(int(g.max()) + 1, dtype=np.int64)
            np.maximum.at(ref_max, g[is_ref], c[is_ref])
            s, g, c = s[~is_ref], g[~is_ref], c[~is_ref]
            other = ref_max[g]
        out[n] = np.bincount(s - first_hyp, np.minimum(c, other), minlength=len(hyps))
    return out


def _bleu_from_matches(matches: np.ndarray, hyp_len, closest) -> np.ndarray:
    """(max_n, S) clipped matches -> (max_n, S): row k-1 is each hypothesis's smoothed BLEU-k."""
    max_n = len(matches)
    orders = np.arange(1, max_n + 1)[:, None]
    total = np.maximum(1, hyp_len[None, :] - orders + 1)           # n-grams in the hypothesis, at least 1
    logp = np.log(np.where(matches > 0, matches, EPSILON) / total)  # method 1 smoothing
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(hyp_len > closest, 1.0, np.where(hyp_len == 0, 0.0, np.exp(1 - closest / hyp_len)))
    scores = np.stack([bp * np.exp((logp[:k] * (1 / k)).sum(0)) for k in range(1, max_n + 1)])
    return np.where(matches[0] > 0, scores, 0.0)  # NLTK: no unigram match -> 0


def bleu_scores(samples: list, references: list, max_n: int = 4, tokenize="whitespace") -> np.ndarray:
    """Per-sample BLEU against all `references` (NLTK sentence_bleu, smoothing method 1),
    shape (max_n, len(samples)): row k-1 holds BLEU-k."""
    _same_form(samples, references)
    hyps, refs = tokens(samples, tokenize), tokens(references, tokenize)
    if not hyps or not refs:
        raise AdvgenError("BLEU needs at least one sample and one reference")
    hyp_len = np.array([len(h) for h in hyps])
    closest = _closest_lengths(hyp_len, np.array([len(r) for r in refs]), exclude_self=False)
    return _bleu_from_matches(_matches(hyps, refs, max_n), hyp_len, closest)


def self_bleu_scores(samples: list, max_n: int = 4, tokenize="whitespace") -> np.ndarray:
    """Per-sample Self-BLEU, shape (max_n, len(samples)): each sample is scored by NLTK's
    sentence_bleu (smoothing method 1) against all the OTHER samples, never against itself;
    row k-1 holds Self-BLEU-k."""
    hyps = tokens(samples, tokenize)
    if len(hyps) < 2:
        raise AdvgenError("Self-BLEU needs at least two samples")
    hyp_len = np.array([len(h) for h in hyps])
    closest = _closest_lengths(hyp_len, hyp_len, exclude_self=True)
    return _bleu_from_matches(_matches(hyps, None, max_n), hyp_len, closest)


def bleu(samples: list, references: list, n: int = 4, tokenize="whitespace") -> float:
    """BLEU-n: mean over samples of sentence BLEU-n against all references."""
    return float(bleu_scores(samples, references, n, tokenize)[n - 1].mean())


def self_bleu(samples: list, n: int = 4, tokenize="whitespace") -> float:
    """Self-BLEU-n: mean over samples of sentence BLEU-n against all other samples (never itself)."""
    return float(self_bleu_scores(samples, n, tokenize)[n - 1].mean())


# ---------------------------------------------------------------------------------------------
# n-gram diversity

def distinct(samples: list, max_n: int = 4, tokenize="whitespace") -> list:
    """[distinct-1, ..., distinct-max_n]: distinct n-grams / all n-grams, pooled over samples (0 if none)."""
    out = []
    for _, gram in ngram_ids(tokens(samples, tokenize), max_n):
        out.append(len(np.unique(gram)) / len(gram) if len(gram) else 0.0)
    return out


def entropy(samples: list, max_n: int = 4, tokenize="whitespace") -> list:
    """[entropy-1, ..., entropy-max_n]: Shannon entropy (nats) of the pooled n-gram frequencies."""
    out = []
    for _, gram in ngram_ids(tokens(samples, tokenize), max_n):
        p = np.bincount(gram) / len(gram) if len(gram) else np.ones(1)
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum()))
    return out


def unique_ratio(samples: list, tokenize="whitespace") -> float:
    """Distinct samples (as token sequences) / number of samples."""
    toks = tokens(samples, tokenize)
    return len(set(map(tuple, toks))) / len(toks) if toks else 0.0


def ms_jaccard(samples: list, references: list, n: int = 4, tokenize="whitespace") -> float:
    """MS-Jaccard-n: geometric mean over k = 1..n of the multiset Jaccard index of k-gram counts,
    each side's counts divided by its number of sentences."""
    _same_form(samples, references)
    hyps, refs = tokens(samples, tokenize), tokens(references, tokenize)
    if not hyps or not refs:
        raise AdvgenError("MS-Jaccard needs at least one sample and one reference")
    logs = []
    for sentence, gram in ngram_ids(refs + hyps, n):
        size = int(gram.max()) + 1 if len(gram) else 1
        is_ref = sentence < len(refs)
        ref = np.bincount(gram[is_ref], minlength=size) / len(refs)
        hyp = np.bincount(gram[~is_ref], minlength=size) / len(hyps)
        union = np.maximum(ref, hyp).sum()
        score = np.minimum(ref, hyp).sum() / union if union else 0.0
        if score == 0:
            return 0.0
        logs.append(math.log(score))
    return math.exp(sum(logs) / n)


# ---------------------------------------------------------------------------------------------
# embeddings: FED and MAUVE

def paired(samples: list, references: list) -> tuple:
    """Each sample against its own reference -> ({sacrebleu, sentence-bleu, chrf, rouge-l, exact-match}, the
    sacrebleu signatures of the BLEU and chrF scores)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(samples) != len(references) or not samples:
        raise AdvgenError(f"paired metrics need one reference per sample, got {len(samples)} samples and "
                          f"{len(references)} references")
    bleu_metric, chrf_metric = sacrebleu.BLEU(), sacrebleu.CHRF()
    sentence_metric = sacrebleu.BLEU(effective_order=True)
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    values = {
        "sacrebleu": bleu_metric.corpus_score(samples, [references]).score,
        "sentence-bleu": float(np.mean([sentence_metric.sentence_score(h, [r]).score for h, r in zip(samples, references)])),
        "chrf": chrf_metric.corpus_score(samples, [references]).score,
        "rouge-l": 100 * float(np.mean([rouge.score(r, h)["rougeL"].fmeasure for h, r in zip(samples, references)])),
        "exact-match": 100 * float(np.mean([h.strip().lower() == r.strip().lower() for h, r in zip(samples, references)])),
    }
    return values, {"bleu": str(bleu_metric.get_signature()), "chrf": str(chrf_metric.get_signature())}


def normalized(label: str) -> str:
    """A generated or reference tag as it is compared: stripped, inner white space collapsed, lower-cased."""
    return " ".join(str(label).split()).lower()


def rank_tags(tags: list, logprobs: list) -> list:
    """The distinct tags among one item's samples, most frequent first; a tie goes to the tag whose most probable
    sample has the higher log-probability (then alphabetically, so the ranking is a function of its inputs)."""
    count, best = Counter(), {}
    for tag, lp in zip(map(normalized, tags), logprobs):
        count[tag] += 1
        best[tag] = max(best.get(tag, -math.inf), lp)
    return sorted(count, key=lambda t: (-count[t], -best[t], t))


def tag_scores(samples: list, truths: list, ks=(1, 3, 5)) -> dict:
    """Tags generated for items -> accuracy and ranking quality. `samples`: per item, a list of (tag, logprob) for
    its n samples; `truths`: per item, its reference tag (or a set of tags). accuracy: the share of all samples
    equal to their item's tag; then `ranking_scores` of the distinct tags ranked by `rank_tags`."""
    if len(samples) != len(truths) or not samples:
        raise AdvgenError(f"tag scores need one truth per item, got {len(samples)} items and {len(truths)} truths")
    truth_sets = [_truth_set(truth) for truth in truths]
    hits = [normalized(tag) in truth for drawn, truth in zip(samples, truth_sets) for tag, _ in drawn]
    ranked = [rank_tags([t for t, _ in drawn], [lp for _, lp in drawn]) for drawn in samples]
    return {"tag-accuracy": float(np.mean(hits)), **ranking_scores(ranked, truths, ks)}


def ranking_scores(ranked: list, truths: list, ks=(1, 3, 5)) -> dict:
    """Per item, a ranked list of distinct labels (generated tags, or a classifier's classes by probability) and its
    true label (or set of labels) -> precision@k = |top-k & truth| / k and recall@k = |top-k & truth| / |truth|,
    means over items."""
    if len(ranked) != len(truths) or not ranked:
        raise AdvgenError(f"ranking scores need one truth per item, got {len(ranked)} items and {len(truths)} truths")
    truth_sets = [_truth_set(truth) for truth in truths]
    values = {}
    for k in ks:
        found = [len({normalized(t) for t in r[:k]} & truth) for r, truth in zip(ranked, truth_sets)]
        values[f"precision@{k}"] = float(np.mean([f / k for f in found]))
        values[f"recall@{k}"] = float(np.mean([f / len(truth) for f, truth in zip(found, truth_sets)]))
    return values


def _truth_set(truth) -> set:
    return {normalized(t) for t in ([truth] if isinstance(truth, (str, int)) else truth)}


def encoder(spec: str = "minilm-l6", device="cpu"):
    """-> (BERT-style encoder on `device`, tokenizer). Default: the packaged all-MiniLM-L6-v2, offline."""
    from transformers import AutoModel, AutoTokenizer

    from advgen.models import _source

    folder = _source(spec, "discriminator")
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval().to(device)
    return model, AutoTokenizer.from_pretrained(folder)


@torch.no_grad()
def embed(texts: list, model=None, tokenizer=None, batch_size: int = 256, max_length: int = 256) -> np.ndarray:
    """Strings -> (N, D) float64 sentence embeddings: mean of the last hidden states over real
    tokens, L2-normalised (sentence-transformers' recipe for all-MiniLM-L6-v2). Batches hold texts
    of equal or near token length, so almost no compute goes to padding."""
    if model is None:
        model, tokenizer = encoder()
    device = next(model.parameters()).device
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(texts), model.config.hidden_size))
    for i in range(0, len(texts), batch_size):
        index = order[i:i + batch_size]
        rows = [torch.tensor(ids[j]) for j in index]
        input_ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=tokenizer.pad_token_id)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(r) for r in rows], batch_first=True)
        hidden = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state  # (B, T, D)
        weights = mask.to(device).unsqueeze(-1).to(hidden.dtype)                                          # (B, T, 1)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        out[index] = torch.nn.functional.normalize(mean, dim=-1).double().cpu().numpy()
    return out


def fed(sample_embeddings: np.ndarray, reference_embeddings: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sets of embeddings (rows).

    Tr((C1 C2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    C1^(1/2) C2 C1^(1/2), so identical sets give 0 up to rounding."""
    x, y = np.asarray(sample_embeddings, float), np.asarray(reference_embeddings, float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise AdvgenError(f"FED needs two (N >= 2, D) embedding arrays of equal D, got {x.shape} and {y.shape}")
    mu = x.mean(0) - y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(cx)
    root_cx = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_cx @ cy @ root_cx), 0, None)).sum()
    return float(max(mu @ mu + np.trace(cx) + np.trace(cy) - 2 * cross, 0.0))


def mauve(sample_embeddings: np.ndarray, reference_embeddings: np.ndarray, seed: int = 25,
          kmeans_num_redo: int = 1) -> float:
    """MAUVE (Pillutla et al. 2021) through `mauve-text`, with references as P and samples as Q.

    Its defaults throughout, except one k-means run instead of five (`kmeans_num_redo`, the
    package's own advice for speed: five times faster; pass 5 for its default)."""
    import mauve as mauve_text

    out = mauve_text.compute_mauve(p_features=np.asarray(reference_embeddings, np.float32),
                                   q_features=np.asarray(sample_embeddings, np.float32), seed=seed,
                                   kmeans_num_redo=kmeans_num_redo)
    return float(out.mauve)


# ---------------------------------------------------------------------------------------------
# likelihood

def mean_nll(model, examples: list, batch_size: int, pad_id: int, device, max_batches: int = 0,
             temperature: float = 1.0) -> float:
    """Mean negative log-likelihood per target token (EOS included), in nats, of (prompt ids, target
    ids) examples under `model` with its logits divided by `temperature`."""
    total, count = total_nll(model, examples, batch_size, pad_id, device, max_batches, temperature)
    return total / count


def target_words(tokenizer, targets: list) -> int:
    """Whitespace words of target id lists as the model scores them (cut targets count their kept words), each
    EOS counted as one more word: the denominator of a tokenizer-independent NLL per word."""
    eos = tokenizer.eos_token_id
    return sum(len(tokenizer.decode([i for i in t if i != eos]).split()) + (bool(t) and t[-1] == eos) for t in targets)


def nll_per_token_and_word(model, tokenizer, examples: list, batch_size: int, device, max_batches: int = 0,
                           temperature: float = 1.0) -> tuple:
    """(NLL per target token, NLL per word) of the first `max_batches` batches (0: all) of the examples: one total
    over two denominators, the target tokens and the targets' words (target_words), so runs compare across
    tokenizers."""
    total, count = total_nll(model, examples, batch_size, tokenizer.pad_token_id, device, max_batches, temperature)
    scored = examples[:max_batches * batch_size or None]
    return total / count, total / target_words(tokenizer, [t for _, t in scored])


def word_validity(samples: list, vocabulary: set) -> float:
    """The share of the samples' whitespace words that occur in `vocabulary` (the training split's words)."""
    words = [w for s in samples for w in s.split()]
    return sum(w in vocabulary for w in words) / len(words) if words else 0.0


@torch.no_grad()
def total_nll(model, examples: list, batch_size: int, pad_id: int, device, max_batches: int = 0,
              temperature: float = 1.0) -> tuple:
    """(summed negative log-likelihood of the target tokens, their count) of the first `max_batches` batches
    (0: all) of (prompt ids, target ids) examples, logits divided by `temperature`."""
    from advgen import data, models

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for b, i in enumerate(range(0, len(examples), batch_size)):
        if max_batches and b >= max_batches:
            break
        batch = {k: v.to(device) for k, v in data.collate(examples[i:i + batch_size], pad_id).items()}
        nll, n = models.target_nll(model, batch, temperature)
        total += float(nll)
        count += n
    model.train(was_training)
    return total, count
