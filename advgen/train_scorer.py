"""`advgen train-scorer`: fine-tune a BERT-family classifier on a labelled corpus field (style or click).

Output folder (written to a hidden name and renamed when complete): the classifier in HF format,
`scorer.json` (kind, label mapping, threshold, text field, max_length), `summary.json` (held-out
quality beside a majority-class and a bag-of-words logistic-regression baseline), `metrics.jsonl`.
"""
import math
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from advgen import config, data, distributed, metrics, models, scorers
from advgen.config import ScorerConfig
from advgen.errors import AdvgenError
from advgen.runlog import RunLog

def labelled_splits(records: list, cfg: ScorerConfig) -> tuple:
    """-> ({split: (texts, class ids, raw label values)}, class names), split by product like the generator's."""
    present = set().union(*(r.keys() for r in records))
    needed = scorers.label_column(cfg.label, present)
    for name, role in [(cfg.field, "text field (--field)"), (needed, "label (--label)")]:
        if name not in present:
            raise AdvgenError(f"corpus has no {role} column '{name}' (columns: {', '.join(sorted(present))})")
    rows = [(r, scorers.label_of(r, cfg.kind, cfg.label, cfg.threshold)) for r in records if str(r.get(cfg.field) or "").strip()]
    rows = [(r, y) for r, y in rows if y is not None]
    names = scorers.ENGAGED if cfg.kind == "click" else sorted({y for _, y in rows}, key=_natural)
    counts = {name: sum(y == name for _, y in rows) for name in names}
    if sum(c > 0 for c in counts.values()) < 2:
        if cfg.kind == "click":
            raise AdvgenError(f"--threshold {cfg.threshold} leaves a class empty: {counts} "
                              f"('{cfg.label}' >= {cfg.threshold} is 'engaged')")
        raise AdvgenError(f"label '{cfg.label}' is constant in the corpus ({counts}): nothing to learn")
    group = cfg.split_by or data.default_group([r for r, _ in rows], cfg.field)
    splits = {}
    for split in data.SPLITS:
        chosen = [(r, y) for r, y in rows if data.split_of(r, group) == split]
        if not chosen:
            raise AdvgenError(f"the {split} split is empty ({len(rows)} labelled rows grouped by '{group}')")
        splits[split] = ([str(r[cfg.field]).strip() for r, _ in chosen], [names.index(y) for _, y in chosen],
                         [r.get(needed) for r, _ in chosen])
    if len(set(splits["train"][1])) < 2:
        raise AdvgenError(f"label '{cfg.label}' has one class only in the train split: nothing to learn")
    return splits, names


def _natural(name: str):
    """Sort numeric labels as numbers ('2' before '10') and others alphabetically."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def quality(kind: str, probs: np.ndarray, y: np.ndarray, raw) -> dict:
    """Held-out quality of class probabilities (N, classes): style -> accuracy, macro-F1, precision@k and recall@k
    of the classes ranked by probability (k = 1, 3, 5; as for generated tags), confusion matrix (rows true, columns
    predicted); click -> ROC-AUC on the binarised label, Spearman against the raw count."""
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    predicted = probs.argmax(1)
    if kind == "style":
        labels = list(range(probs.shape[1]))
        return {"accuracy": accuracy_score(y, predicted),
                "macro_f1": f1_score(y, predicted, labels=labels, average="macro", zero_division=0),
                **metrics.ranking_scores(np.argsort(-probs, axis=1, kind="stable").tolist(), y.tolist()),
                "confusion": confusion_matrix(y, predicted, labels=labels).tolist()}
    score = probs[:, 1]
    constant = np.ptp(score) == 0  # a constant score ranks nothing: AUC 0.5, no correlation
    return {"roc_auc": 0.5 if constant else roc_auc_score(y, score),
            "spearman": 0.0 if constant else spearmanr(score, np.asarray(raw, dtype=float)).statistic,
            "accuracy": accuracy_score(y, predicted), "positive_rate": float(np.mean(y))}


def bag_of_words(kind: str, splits: dict, classes: int) -> dict:
    """Majority class and bag-of-words logistic regression (scikit-learn; C chosen on the validation split)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    (train_x, train_y, _), (valid_x, valid_y, _), (test_x, test_y, test_raw) = (splits[s] for s in data.SPLITS)
    prior = np.bincount(train_y, minlength=classes) / len(train_y)
    out = {"majority": quality(kind, np.tile(prior, (len(test_y), 1)), np.array(test_y), test_raw)}
    vectorizer = CountVectorizer(min_df=2)
    train_bow, valid_bow, test_bow = vectorizer.fit_transform(train_x), vectorizer.transform(valid_x), vectorizer.transform(test_x)
    fits = {c: LogisticRegression(C=c, max_iter=2000).fit(train_bow, train_y) for c in (0.1, 0.3, 1.0, 3.0)}
    losses = {c: log_loss(valid_y, _all_classes(m, valid_bow, classes), labels=list(range(classes))) for c, m in fits.items()}
    best = min(losses, key=losses.get)
    out["bow_logreg"] = {**quality(kind, _all_classes(fits[best], test_bow, classes), np.array(test_y), test_raw),
                         "C": best, "vocabulary": len(vectorizer.vocabulary_)}
    if kind == "click":  # the alternative to binarising: ridge regression on log1p(count), alpha chosen on valid
        from scipy.stats import spearmanr
        from sklearn.linear_model import Ridge

        log1p = lambda raw: np.log1p(np.asarray(raw, dtype=float))  # noqa: E731
        ridges = {a: Ridge(alpha=a).fit(train_bow, log1p(splits["train"][2])) for a in (1.0, 10.0, 100.0)}
        rho = {a: spearmanr(m.predict(valid_bow), splits["valid"][2]).statistic for a, m in ridges.items()}
        alpha = max(rho, key=rho.get)
        prediction = ridges[alpha].predict(test_bow)
        out["bow_ridge_log1p"] = {"spearman": spearmanr(prediction, test_raw).statistic,
                                  "roc_auc": roc_auc_score(test_y, prediction), "alpha": alpha}
    return out


def _all_classes(model, x, classes: int) -> np.ndarray:
    """predict_proba with a column for every class, also those absent from the training split."""
    probs = np.zeros((x.shape[0], classes))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


def held_out(model, tokenizer, info: dict, texts: list, y: list, batch_size: int) -> tuple:
    """-> (mean cross-entropy, class probabilities (N, classes)) of the classifier on labelled texts."""
    probs = scorers.probabilities(scorers.Scorer(model, tokenizer, info), texts, batch_size)
    loss = F.nll_loss(probs.clamp_min(1e-12).log(), torch.tensor(y)).item()
    return loss, probs.numpy()


def train_scorer(cfg: ScorerConfig) -> Path:
    started = time.time()
    config.validate_scorer(cfg)
    distributed.check_divides(cfg.batch_size, "--batch-size")
    out = Path(cfg.out)
    if out.exists():
        raise AdvgenError(f"scorer folder {out} already exists: choose another --out")
    device = distributed.setup(models.resolve_device(cfg.device))
    main = distributed.is_main()

    # Everything that can fail on bad input happens before anything is written.
    splits, names = labelled_splits(data.load_corpus(cfg.corpus), cfg)
    model, tokenizer = models.load_discriminator(cfg.model, len(names), cfg.dropout, cfg.seed)
    model.to(device)
    info = {"kind": cfg.kind, "label": cfg.label, "labels": names, "field": cfg.field, "max_length": cfg.max_length,
            "threshold": cfg.threshold if cfg.kind == "click" else None, "model": cfg.model, "config": asdict(cfg)}
    train = list(zip(scorers.encode(tokenizer, splits["train"][0], cfg.max_length), splits["train"][1]))
    valid_x, valid_y, valid_raw = (v[:cfg.eval_batches * cfg.batch_size or None] for v in splits["valid"])
    optimizer = torch.optim.AdamW(models.param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)

    step_model = distributed.data_parallel(model)  # DDP under torchrun: each rank trains on its slice of a batch
    distributed.barrier()  # every rank has checked --out before rank 0 writes beside it
    work = None
    if main:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))  # logs now, renamed into place at the end
    try:
        torch.manual_seed(cfg.seed)
        log = RunLog(work, cfg.max_steps, desc=f"train-scorer {cfg.kind}:{cfg.label}", enabled=main)
        log.log(0, {"data/train": len(train), "data/valid": len(splits["valid"][0]), "data/test": len(splits["test"][0]),
                    **{f"data/train_class/{n}": splits["train"][1].count(i) for i, n in enumerate(names)}})
        best = {"loss": math.inf, "step": 0, "state": None}
        bad_evals, step = 0, 0
        model.train()
        while step < cfg.max_steps:
            ids, labels = zip(*distributed.shard(data.batch_at(train, cfg.batch_size, cfg.seed, step)))
            loss, _ = scorers.classifier_loss(step_model, tokenizer, list(ids), torch.tensor(labels))
            loss.backward()  # the ranks' equal slices: DDP's average of their means is the batch mean
            loss = distributed.gather(loss.detach().reshape(1)).mean()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip if cfg.clip else math.inf)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            log.log(step, {"losses/train": loss.item(), "charts/lr": scheduler.get_last_lr()[0],
                           "charts/grad_norm": float(grad_norm)})
            log.bar.update(1)
            log.bar.set_postfix(loss=f"{loss.item():.3f}")
            if (step % cfg.eval_every == 0 or step == cfg.max_steps) and main:
                val_loss, probs = held_out(model, tokenizer, info, valid_x, valid_y, cfg.batch_size)
                scores = quality(cfg.kind, probs, np.array(valid_y), valid_raw)
                scores.pop("confusion", None)
                if val_loss < best["loss"]:
                    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    best, bad_evals = {"loss": val_loss, "step": step, "state": state}, 0
                else:
                    bad_evals += 1
                log.log(step, {"val/loss": val_loss, **{f"val/{k}": v for k, v in scores.items()}})
                log.write(f"step {step}: val loss {val_loss:.4f} " + " ".join(f"{k} {v:.3f}" for k, v in scores.items()))
            if step % cfg.eval_every == 0 and distributed.broadcast(bool(cfg.patience) and bad_evals >= cfg.patience):
                break  # rank 0 validated; every rank stops together
        log.close()
        del step_model  # before the process group goes (distributed.cleanup)
        distributed.cleanup()
        if not main:
            return out

        model.load_state_dict(best["state"])
        test_x, test_y, test_raw = splits["test"]
        test_loss, probs = held_out(model, tokenizer, info, test_x, test_y, cfg.batch_size)
        summary = {"kind": cfg.kind, "label": cfg.label, "labels": names, "best_step": best["step"], "steps": step,
                   "valid_loss": best["loss"], "test_loss": test_loss,
                   "test_examples": len(test_y), "test_class_counts": np.bincount(test_y, minlength=len(names)).tolist(),
                   "test": {"scorer": quality(cfg.kind, probs, np.array(test_y), test_raw),
                            **bag_of_words(cfg.kind, splits, len(names))},
                   "wall_seconds": round(time.time() - started, 1)}
        models.save(model, tokenizer, out, files={"scorer.json": info, "summary.json": _plain(summary),
                                                   **{name: work / name for name in ("metrics.jsonl", "tb")
                                                      if (work / name).exists()}})
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _plain(obj):
    """numpy scalars -> Python numbers, so the summary is JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj
