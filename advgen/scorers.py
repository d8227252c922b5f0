"""Scorer models: BERT-family sequence classifiers that map texts to class probabilities.

A scorer is saved in HF format with a `scorer.json` beside its weights (`advgen train-scorer` writes the
style and click scorers, `advgen adversarial` the discriminator):

    {"kind": "style" | "click" | "realism", "labels": [name of class 0, name of class 1, ...], ...}

Here: loading and saving them, batched probabilities, the realism discriminator and its training step,
and the rules that turn a corpus row into a class name (sentiment from rating, click from a count).
Each scorer re-tokenizes texts with its own tokenizer (the generator's differs), truncated to its
`max_length`, in batches of similar length.
"""
import json
import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from advgen import models
from advgen.errors import AdvgenError

SENTIMENT = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}
ENGAGED = ["not engaged", "engaged"]  # click classes: count < threshold, count >= threshold


def label_column(label: str, columns) -> str:
    """The corpus column a label is read from: 'sentiment' buckets the 1-5 'rating' when the corpus (`columns`,
    any container of column names) has no 'sentiment' column of its own; every other label is its column."""
    return "rating" if label == "sentiment" and "sentiment" not in columns else label


def label_of(record: dict, kind: str, label: str, threshold: int = 1):
    """The class name of a corpus row (None where the row has no label). 'sentiment' buckets a 1-5 rating
    when the corpus has no sentiment column; a click label is the count binarised at `threshold`."""
    column = label_column(label, record)
    derived = column != label
    value = record.get(column)
    if value is None or str(value).strip() == "":
        return None
    if kind == "click" or derived:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise AdvgenError(f"{column} must be a number, got {value!r}") from None
        if kind == "click":
            return ENGAGED[number >= threshold]
        if number not in SENTIMENT:
            raise AdvgenError(f"sentiment buckets ratings 1-5, got rating {value!r}")
        return SENTIMENT[int(number)]
    return str(value).strip()


class Scorer(NamedTuple):
    model: torch.nn.Module
    tokenizer: object
    info: dict  # scorer.json: kind, labels, max_length, and how the labels were made


def load_scorer(folder, device="cpu") -> Scorer:
    folder = Path(folder)
    if not (folder / "scorer.json").is_file() or not (folder / "config.json").is_file():
        raise AdvgenError(f"{folder} is not a scorer folder (needs config.json and scorer.json; "
                          "`advgen train-scorer` writes one)")
    info = json.loads((folder / "scorer.json").read_text())
    model, tokenizer = models.load_discriminator(str(folder), num_labels=len(info["labels"]))
    return Scorer(model.to(device).eval(), tokenizer, info)


def encode(tokenizer, texts: list, max_length: int) -> list:
    """Texts -> token id lists, truncated to `max_length` (special tokens included); '' gives [CLS] [SEP]."""
    if not texts:
        return []
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def pad(tokenizer, ids: list, device) -> dict:
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def probabilities(scorer: Scorer, texts: list, batch_size: int = 64) -> torch.Tensor:
    """-> (N, classes) class probabilities, in the order of `texts`. Batches are cut from the texts
    sorted by token length, so little of the work is padding."""
    model, tokenizer, info = scorer
    was_training = model.training
    model.eval()
    ids = encode(tokenizer, texts, info.get("max_length", 128))
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    probs = torch.empty(len(ids), len(info["labels"]))
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        logits = model(**pad(tokenizer, [ids[i] for i in rows], device)).logits
        probs[rows] = logits.float().softmax(-1).cpu()
    model.train(was_training)
    return probs


def target_of(record: dict, scorer: Scorer):
    """The class a style scorer should give a text written for `record`: the record's own value of the scorer's
    label (a field of the record or of its "condition", as samples files carry it); None where it states none,
    and for scorers of other kinds."""
    if scorer.info["kind"] != "style":
        return None
    return label_of({**record, **(record.get("condition") or {})}, "style", scorer.info["label"])


def judge(scorer: Scorer, texts: list, records: list = None, batch_size: int = 64) -> list:
    """What a scorer says of each text: {"score"} = P(engaged) for a click model, P(real) for a discriminator; for
    a style scorer also {"label"} (its most probable class) and, where the text's record (`records`, one per
    text) states a target label, {"target"}, and then "score" is P(target), else P(label)."""
    probs = probabilities(scorer, texts, batch_size)
    if scorer.info["kind"] != "style":
        return [{"score": float(p)} for p in probs[:, 1]]
    labels = scorer.info["labels"]
    out = []
    for i, p in enumerate(probs):
        top = int(p.argmax())
        target = target_of(records[i], scorer) if records is not None else None
        if target is not None and target not in labels:
            raise AdvgenError(f"target label {target!r} is not a label of the style scorer ({', '.join(labels)})")
        out.append({"score": float(p[labels.index(target) if target is not None else top]), "label": labels[top],
                    **({"target": target} if target is not None else {})})
    return out


def new_discriminator(spec: str, max_length: int = 128, dropout=None, seed: int = 0) -> Scorer:
    """A new realism discriminator: the encoder `spec` (models.load_discriminator) with a 2-way head,
    class 1 = real, class 0 = generated (discriminator_step trains it)."""
    model, tokenizer = models.load_discriminator(spec, num_labels=2, dropout=dropout, seed=seed)
    return Scorer(model, tokenizer, {"kind": "realism", "labels": ["generated", "real"], "max_length": max_length,
                                     "model": spec})


def save_scorer(scorer: Scorer, folder) -> None:
    """HF format plus scorer.json, atomically."""
    models.save(scorer.model, scorer.tokenizer, folder, files={"scorer.json": scorer.info})


def classifier_loss(model, tokenizer, ids: list, labels: torch.Tensor, label_smoothing: float = 0.0) -> tuple:
    """Cross-entropy of a sequence classifier on token id lists -> (loss, logits (B, classes))."""
    device = next(model.parameters()).device
    logits = model(**pad(tokenizer, ids, device)).logits.float()
    return F.cross_entropy(logits, labels.to(device), label_smoothing=label_smoothing), logits


def discriminator_step(scorer: Scorer, optimizer, real: list, fake: list, clip: float = 1.0,
                       label_smoothing: float = 0.0) -> dict:
    """One step of the realism discriminator on real texts (label 1) against generated ones (label 0); its logs
    (D(real), D(fake), accuracy) are of the batch before the update."""
    model, tokenizer, info = scorer
    model.train()
    ids = encode(tokenizer, real + fake, info["max_length"])
    labels = torch.tensor([1] * len(real) + [0] * len(fake))
    loss, logits = classifier_loss(model, tokenizer, ids, labels, label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip else math.inf)
    optimizer.step()
    p_real = logits.detach().softmax(-1)[:, 1].cpu()
    return {"disc/loss": loss.item(), "disc/d_real": p_real[:len(real)].mean().item(),
            "disc/d_fake": p_real[len(real):].mean().item(),
            "disc/accuracy": ((p_real > 0.5).long() == labels).float().mean().item(),
            "disc/grad_norm": float(grad_norm)}
