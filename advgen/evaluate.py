"""The commands that use a trained run: `advgen sample`, `advgen evaluate` and `advgen sweep`.

sample: a run's generator, prompted as it was trained (test-split rows, some condition values fixed, or the rows of
a file of new items) -> a JSONL file of texts with their token counts and log-probabilities.
evaluate: samples (a .txt/.jsonl/.csv file, or drawn from a run's generator) against references
(a split of the run's corpus, or a file) -> a table on the terminal and a JSON report.
sweep: each run sampled across temperatures -> quality (BLEU-4, test NLL, realism where the run has
a discriminator) and diversity (Self-BLEU-4, distinct-n) per (run, temperature) -> CSV and a plot.
"""
import csv
import gzip
import hashlib
import io
import json
import math
import random
import re
import time
from pathlib import Path

import numpy as np

from advgen import data, kernels, metrics, models, rewards, runs, sampling, scorers, seeds
from advgen.config import PretrainConfig
from advgen.errors import AdvgenError
from advgen.runlog import atomic, progress, write_json

METRICS = ["bleu", "self-bleu", "distinct", "entropy", "unique", "ms-jaccard", "fed", "mauve", "validity", "nll", "paired",
           "tags"]
ON_REQUEST = {"paired", "tags"}  # never in the default list: paired replaces bleu when paired; tags samples n per item
# paired: each sample against its own item's reference (metrics.paired), in place of "bleu" against all references;
# auto: paired for a run with conditions or a source, and for a samples file whose every row has a "reference".
PAIRINGS = ("auto", "paired", "unpaired")
# Named protocols: the settings of a published table, so a user measures their own samples the same way.
# texygen: Texygen's COCO table (and "Language GANs Falling Short"): BLEU-2..5 of each sample against all the
# references and Self-BLEU-2..5 against the other samples, NLTK Treebank words, 10,000 samples from a run.
PROTOCOLS = {"texygen": dict(metric_names=["bleu", "self-bleu"], tokenize="treebank", max_n=5, n=10_000)}


def texts_of(records: list, field: str, what: str) -> list:
    """The text column of records read by data.load_corpus: 'text' where present, else `field`."""
    key = "text" if "text" in records[0] else field
    if key not in records[0]:
        raise AdvgenError(f"{what} has no '{field}' or 'text' field (fields: {', '.join(sorted(records[0]))})")
    return [str(r.get(key) if r.get(key) is not None else "").strip() for r in records]


def reference_records(references: str, cfg: PretrainConfig) -> tuple:
    """'train'/'valid'/'test' -> that split of cfg's corpus; a path -> the file's records. -> (records, label)."""
    if references in data.SPLITS:
        return data.load_splits(cfg)[references], f"{references} split of {cfg.corpus} ({cfg.field})"
    if not Path(references).is_file():
        raise AdvgenError(f"--references '{references}' is neither a split ({', '.join(data.SPLITS)}) nor a file")
    return data.load_corpus(references), references


# ---------------------------------------------------------------------------------------------
# sample

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


def input_rows(path, cfg: PretrainConfig, fixed: dict) -> list:
    """The rows of an --inputs file (.jsonl or .csv, optionally .gz), each with every field the run's prompt needs
    (its condition fields and its source), `fixed` values applied over the file's. A row without one: an error
    naming the row (1-based, as a line of JSONL or a data row of CSV) and the field."""
    try:
        records = data.load_corpus(path)
    except AdvgenError as e:
        raise AdvgenError(f"--inputs: {e}") from None
    needed = list(cfg.condition) + ([cfg.source] if cfg.source else [])
    rows = []
    for i, record in enumerate(records, 1):
        row = {**record, **fixed}
        missing = [f for f in needed if row.get(f) is None or not str(row[f]).strip()]
        if missing:
            raise AdvgenError(f"--inputs {path} row {i} has no '{missing[0]}' (the run's prompt needs "
                              f"{', '.join(needed)})")
        rows.append(row)
    return rows


def sample_run(run, out, n=None, condition=None, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
               repetition_penalty=1.0, max_new_tokens=None, batch_size=64, seed=0, device="auto",
               compile=False, inputs=None, num_samples=1, best_of=1, rerank_by=None) -> Path:
    """Sample texts from the generator of a run folder into a JSONL file, written atomically.

    Prompts follow the run's task. Without `inputs`: n prompts, whose condition fields given in `condition` are
    fixed and whose other fields, and the source text of source-conditioned runs, come from the run's test split
    in a seeded order. With `inputs` (a .jsonl/.csv file of new items): `num_samples` texts per row, in the file's
    order, each output row carrying the input row's columns (with `condition` applied) under "input" and its 1-based
    number under "row".

    `best_of` N > 1 with `rerank_by` (a scorer folder): N draws per wanted text, of which the one the scorer rates
    best is kept (style: P(the prompt's own label); click: P(engaged)), with its score and N under "rerank"."""
    if (best_of > 1) != (rerank_by is not None):
        raise AdvgenError("--best-of N (N > 1) and --rerank-by SCORER go together")
    if best_of < 1:
        raise AdvgenError(f"--best-of must be positive, got {best_of}")
    if inputs is not None and n is not None:
        raise AdvgenError("--n and --inputs exclude each other: with --inputs, --num-samples texts per row")
    n = 1000 if n is None else n
    if n < 1 or batch_size < 1 or num_samples < 1:
        raise AdvgenError("--n, --num-samples and --batch-size must be positive")
    kernels.check_controls(temperature, top_k, top_p, min_p, repetition_penalty)
    dev = models.resolve_device(device)
    _, cfg, _, model, tokenizer = runs.load(run)
    fixed = parse_condition(condition, cfg.condition)
    if inputs is not None:
        given = input_rows(inputs, cfg, fixed)
        rows = [given[i] for i in range(len(given)) for _ in range(num_samples)]
        numbers = [i + 1 for i in range(len(given)) for _ in range(num_samples)]
    else:
        records = data.load_splits(cfg)["test"]
        order = random.Random(seeds.derive(seed, "test-order")).sample(range(len(records)), len(records))
        rows = [{**records[order[i % len(records)]], **fixed} for i in range(n)]
        numbers = None
    reranker = scorers.load_scorer(rerank_by, dev) if rerank_by is not None else None
    drawn = [r for r in rows for _ in range(best_of)]  # best_of consecutive draws per wanted text
    batches = runs.sample_rows(model.to(dev), tokenizer, cfg, drawn, len(drawn), max_new_tokens, batch_size, seed,
                               temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                               repetition_penalty=repetition_penalty, compile=compile)
    written = []
    with progress(len(drawn), "sample", unit="text") as bar:
        for start, s in batches:
            for i, text in enumerate(sampling.decode(tokenizer, s)):
                j = (start + i) // best_of  # the wanted text this draw is for
                r = rows[j]
                row = {"text": text, "condition": {c: r[c] for c in cfg.condition}}
                if cfg.source:
                    row["source"] = r[cfg.source]
                if not fixed and str(r.get(cfg.field) or "").strip():  # the item's own target, for paired metrics
                    row["reference"] = str(r[cfg.field]).strip()
                length = int(s.mask[i].sum())
                row.update(tokens=length, finished=bool(length and s.tokens[i, length - 1] == tokenizer.eos_token_id),
                           logprob=round(float(s.logprobs[i].sum()), 4),
                           model_logprob=round(float(s.model_logprobs[i].sum()), 4))
                if numbers is not None:
                    row.update(row=numbers[j], input=given[numbers[j] - 1])
                written.append(row)
            bar.update(len(s.tokens))
    if reranker is not None:
        scores = [j["score"] for j in scorers.judge(reranker, [r["text"] for r in written], drawn, batch_size)]
        best = [max(range(k, k + best_of), key=scores.__getitem__) for k in range(0, len(written), best_of)]
        written = [{**written[b], "rerank": {"scorer": str(rerank_by), "score": round(scores[b], 6), "of": best_of}}
                   for b in best]
    with atomic(out) as tmp, open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in written)
    return Path(out)


# ---------------------------------------------------------------------------------------------
# score

def named_scorers(folders, device) -> dict:
    """Scorer folders -> {folder name: Scorer}; two folders of one name would be ambiguous in a report."""
    named = {}
    for folder in folders or ():
        name = Path(folder).name
        if name in named:
            raise AdvgenError(f"two scorers named {name!r}: give scorer folders with different names")
        named[name] = scorers.load_scorer(folder, device)
    return named


def scorer_metrics(named: dict, texts: list, records: list, batch_size: int = 64) -> dict:
    """Each scorer's verdict on the samples, for a report: a style scorer's share of the samples it assigns to
    their prompt's label (`style-accuracy/NAME`, over the samples whose prompt states one), that share among the
    samples of each target label (`style-accuracy/NAME/LABEL`) and its mean over the target labels
    (`style-balanced-accuracy/NAME`: prompts skewed to one label cannot lift it), and its mean P(that label); a
    click model's mean P(engaged) (`click/NAME`); a discriminator's mean P(real)."""
    values = {}
    for name, scorer in named.items():
        verdicts = scorers.judge(scorer, texts, records, batch_size)
        kind = scorer.info["kind"]
        if kind == "style":
            targeted = [v for v in verdicts if "target" in v]
            if not targeted:
                raise AdvgenError(f"style scorer {name}: no sample's prompt states a '{scorer.info['label']}' "
                                  "label to measure against")
            hits = {}
            for v in targeted:
                hits.setdefault(v["target"], []).append(v["label"] == v["target"])
            values[f"style-accuracy/{name}"] = float(np.mean([h for label_hits in hits.values() for h in label_hits]))
            values[f"style-balanced-accuracy/{name}"] = float(np.mean([np.mean(h) for h in hits.values()]))
            values.update({f"style-accuracy/{name}/{label}": float(np.mean(hits[label])) for label in sorted(hits)})
            values[f"style-p/{name}"] = float(np.mean([v["score"] for v in targeted]))
        else:
            values[f"{kind}/{name}"] = float(np.mean([v["score"] for v in verdicts]))
    return values


def score_file(path, scorer_folders: list, out, field: str = "text", batch_size: int = 64, device="auto") -> Path:
    """One score per text of a .txt/.jsonl/.csv file for each scorer, into a JSONL file (written atomically): the
    file's rows with NAME (the scorer's score: P(engaged), P(real), or for a style scorer P(the row's own label)
    where the row states one, else P(its top label)) and, for a style scorer, NAME/label (its top label)."""
    if not scorer_folders:
        raise AdvgenError("--scorer: give at least one scorer folder")
    if batch_size < 1:
        raise AdvgenError(f"--batch-size must be positive, got {batch_size}")
    records = data.load_corpus(path)
    texts = texts_of(records, field, f"file {path}")
    named = named_scorers(scorer_folders, models.resolve_device(device))
    rows = [dict(r) for r in records]
    for name, scorer in named.items():
        for row, verdict in zip(rows, scorers.judge(scorer, texts, records, batch_size)):
            row[name] = round(verdict["score"], 6)
            if "label" in verdict:
                row[f"{name}/label"] = verdict["label"]
    with atomic(out) as tmp, open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return Path(out)


# ---------------------------------------------------------------------------------------------
# evaluate

def cached_embeddings(texts: list, encoder) -> np.ndarray:
    """Embeddings of a reference set, cached under $ADVGEN_CACHE/embeddings by a hash of the texts,
    as FID tools cache reference statistics: a reference split is embedded once."""
    digest = hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:24]
    path = models.cache_dir() / "embeddings" / f"minilm-l6-{digest}.npy"
    if path.is_file():
        return np.load(path).astype(np.float64)
    out = unique_embeddings(texts, encoder)
    with atomic(path, suffix=".npy") as tmp:
        np.save(tmp, out.astype(np.float32))
    return out


def unique_embeddings(texts: list, encoder) -> np.ndarray:
    """Embed each distinct text once (generated samples repeat themselves)."""
    distinct, index = np.unique(np.array(texts, dtype=object).astype(str), return_inverse=True)
    return metrics.embed(list(distinct), *encoder)[index.ravel()]


def evaluate(samples_or_run: str, references: str = "test", metric_names=None, out=None, n: int = 0,
             temperature: float = 1.0, field: str = "title", tokenize: str = "whitespace", max_n: int = 4,
             batch_size: int = 64, seed: int = 0, protocol: str = None, scorer_folders=(), pairing: str = "auto",
             tag_samples: int = 10, tag_ks=(1, 3, 5), task_from=None) -> dict:
    """-> the report: every requested metric of the samples against the references, and its timing. `protocol`
    (PROTOCOLS) replaces the metrics, tokenization, largest order and n; each of `scorer_folders` adds its verdict
    (scorer_metrics); `pairing` (PAIRINGS): each sample against its own reference too, or not (the report says).
    With `task_from` (a run), `samples_or_run` is a bare model, measured on that run's task (runs.load_with_task)."""
    started = time.time()
    tag_ks = check_options(pairing, tag_samples, tag_ks, max_n, n, batch_size)
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise AdvgenError(f"unknown --protocol '{protocol}' (choose {', '.join(PROTOCOLS)})")
        if pairing == "paired":
            raise AdvgenError(f"--protocol {protocol} measures every sample against all references: it is unpaired")
        metric_names, tokenize, max_n, n = (PROTOCOLS[protocol][k] for k in ("metric_names", "tokenize", "max_n", "n"))
        pairing = "unpaired"
    if task_from is None and not Path(samples_or_run).exists():
        raise AdvgenError(f"no samples file or run folder at {samples_or_run}")
    if task_from is not None and Path(samples_or_run).is_file():
        raise AdvgenError(f"--task-from measures a model (a spec or a run folder), not the samples file {samples_or_run}")
    run = task_from is not None or Path(samples_or_run).is_dir()
    has_split = run or references in data.SPLITS  # a corpus whose train split gives word validity
    names = metric_names or [m for m in METRICS if (run or m != "nll") and (has_split or m != "validity")
                             and m not in ON_REQUEST]
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise AdvgenError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    for needs_run in ("nll", "tags"):
        if needs_run in names and not run:
            raise AdvgenError(f"the {needs_run} metric needs a run folder (a generator), not a samples file")
    if "validity" in names and not has_split:
        raise AdvgenError("the validity metric needs a corpus split as --references (its train split's words)")
    if not isinstance(tokenize, str) or tokenize not in metrics.TOKENIZERS:
        raise AdvgenError(f"unknown --tokenize '{tokenize}' (choose {', '.join(metrics.TOKENIZERS)})")

    seconds = {}
    clock = time.time()
    if run:
        _, cfg, _, model, tokenizer = runs.load_with_task(samples_or_run, task_from) if task_from else runs.load(samples_or_run)
        model.to(models.resolve_device("auto"))
    else:
        if not Path(samples_or_run).read_bytes().strip():
            raise AdvgenError(f"samples file {samples_or_run} is empty")
        cfg = PretrainConfig(field=field)
        sample_records = data.load_corpus(samples_or_run)
        samples = texts_of(sample_records, field, f"samples file {samples_or_run}")
    ref_records, ref_label = reference_records(references, cfg)
    refs = texts_of(ref_records, cfg.field, f"references {ref_label}")
    if run:
        plain = references not in data.SPLITS and data.is_plain_text(references)
        records = data.select(ref_records, cfg.field, cfg.condition, cfg.source, plain)  # prompts need the condition fields
        samples = runs.sample_texts(model, tokenizer, cfg, records, n or len(records), batch_size=batch_size,
                                    seed=seed, temperature=temperature)
        sample_records = [records[i % len(records)] for i in range(len(samples))]  # each sample's prompt row
    pairs = own_references(sample_records, cfg.field if run else "reference")
    pairing = resolve_pairing(pairing, pairs, not run or bool(cfg.condition or cfg.source), names, samples_or_run)
    if metric_names is None and pairing == "paired":
        names = ["paired" if m == "bleu" else m for m in names]
    named = named_scorers(scorer_folders, models.resolve_device("auto"))
    seconds["load"] = time.time() - clock

    values, signatures = {}, None
    sample_tokens, ref_tokens = metrics.tokens(samples, tokenize), metrics.tokens(refs, tokenize)
    orders = range(2, max_n + 1) if max_n > 1 else [1]
    for name in names:
        clock = time.time()
        if name == "bleu":
            scores = metrics.bleu_scores(sample_tokens, ref_tokens, max_n)
            values.update({f"bleu-{k}": float(scores[k - 1].mean()) for k in orders})
        elif name == "self-bleu":
            scores = metrics.self_bleu_scores(sample_tokens, max_n)
            values.update({f"self-bleu-{k}": float(scores[k - 1].mean()) for k in orders})
        elif name == "distinct":
            values.update({f"distinct-{k}": v for k, v in enumerate(metrics.distinct(sample_tokens, max_n), 1)})
        elif name == "entropy":
            values.update({f"entropy-{k}": v for k, v in enumerate(metrics.entropy(sample_tokens, max_n), 1)})
        elif name == "paired":
            paired_values, signatures = metrics.paired(samples, pairs)
            values.update(paired_values)
        elif name == "tags":
            items = records[:n] if n else records
            values.update(tag_metrics(model, tokenizer, cfg, items, tag_samples, tag_ks, batch_size,
                                      seeds.derive(seed, "tags"), temperature))
        elif name == "unique":
            values["unique"] = metrics.unique_ratio(sample_tokens)
        elif name == "ms-jaccard":
            values[f"ms-jaccard-{max_n}"] = metrics.ms_jaccard(sample_tokens, ref_tokens, max_n)
        elif name in ("fed", "mauve"):
            if "embeddings" not in seconds:
                encoder = metrics.encoder(device=models.resolve_device("auto"))
                sample_emb, ref_emb = unique_embeddings(samples, encoder), cached_embeddings(refs, encoder)
                seconds["embeddings"] = time.time() - clock
                clock = time.time()
            values[name] = metrics.fed(sample_emb, ref_emb) if name == "fed" else metrics.mauve(sample_emb, ref_emb, seed)
        elif name == "validity":
            vocabulary = data.vocabulary(data.load_splits(cfg)["train"], cfg.field)
            values["word_validity"] = metrics.word_validity(samples, vocabulary)
            values["references_word_validity"] = metrics.word_validity(refs, vocabulary)  # the data's own share
        elif name == "nll":
            examples = data.encode(tokenizer, records, cfg)
            values["nll"], values["nll_per_word"] = metrics.nll_per_token_and_word(
                model, tokenizer, examples, batch_size, next(model.parameters()).device, temperature=temperature)
            values["ppl"] = metrics.perplexity(values["nll"])
        seconds[name] = time.time() - clock
    if named:
        clock = time.time()
        values.update(scorer_metrics(named, samples, sample_records, batch_size))
        seconds["scorers"] = time.time() - clock
    seconds["total"] = time.time() - started
    report = {"samples": str(samples_or_run), "n_samples": len(samples), "references": ref_label,
              "n_references": len(refs), "task_from": None if task_from is None else str(task_from),
              "protocol": protocol, "pairing": pairing, "tokenize": tokenize,
              "temperature": temperature if run else None,
              "metrics": values, "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    if signatures:
        report["sacrebleu"] = signatures
    if out:
        write_json(Path(out), report)
    return report


def check_options(pairing: str, tag_samples: int, tag_ks, max_n: int, n: int, batch_size: int) -> list:
    """The settings of an evaluation that need no file, checked -> the tag ks as numbers."""
    if pairing not in PAIRINGS:
        raise AdvgenError(f"unknown --pairing '{pairing}' (choose {', '.join(PAIRINGS)})")
    try:
        tag_ks = [int(k) for k in tag_ks]
    except (TypeError, ValueError):
        raise AdvgenError(f"--tag-k: expected comma-separated whole numbers, got {tag_ks}") from None
    if tag_samples < 1 or not tag_ks or min(tag_ks) < 1:
        raise AdvgenError(f"--tag-samples and every --tag-k must be positive, got {tag_samples} and {tag_ks}")
    if max_n < 1 or n < 0 or batch_size < 1:
        raise AdvgenError(f"--max-n and --batch-size must be positive and --n not negative, got {max_n}, {batch_size}, {n}")
    return tag_ks


def resolve_pairing(pairing: str, pairs, conditional: bool, names: list, what) -> str:
    """'auto' -> paired where every sample has its own reference and the task is conditional (a file with a
    reference column counts as one); a paired request without references, or paired metrics unpaired: an error."""
    if pairing == "auto":
        pairing = "paired" if pairs is not None and conditional else "unpaired"
    if pairing == "paired" and pairs is None:
        raise AdvgenError(f"--pairing paired: not every row of {what} has a 'reference' (advgen sample writes each "
                          "test-split prompt's own)")
    if "paired" in names and pairing == "unpaired":
        raise AdvgenError("the paired metrics need --pairing paired (or auto, with a reference per sample)")
    return pairing


def tag_metrics(model, tokenizer, cfg: PretrainConfig, records: list, n: int, ks, batch_size: int, seed: int,
                temperature: float) -> dict:
    """n samples for every item of `records`, scored as tags against the item's own target (metrics.tag_scores)."""
    drawn = [r for r in records for _ in range(n)]
    per_item = [[] for _ in records]
    for start, s in runs.sample_rows(model, tokenizer, cfg, drawn, len(drawn), None, batch_size, seed,
                                     temperature=temperature):
        for i, text in enumerate(sampling.decode(tokenizer, s)):
            per_item[(start + i) // n].append((text, float(s.logprobs[i].sum())))
    return metrics.tag_scores(per_item, [r[cfg.field] for r in records], ks)


def own_references(records: list, key: str):
    """Each sample's own reference (its record's `key`), or None where some sample has none."""
    refs = [str(r.get(key) if r.get(key) is not None else "").strip() for r in records]
    return refs if refs and all(refs) else None


def table(report: dict) -> str:
    """The report as aligned text lines for the terminal."""
    lines = [f"samples     {report['samples']} ({report['n_samples']})",
             f"references  {report['references']} ({report['n_references']})",
             f"pairing     {report['pairing']}" + (" (paired metrics on the 0-100 scale)" if "sacrebleu" in report else "")]
    width = max(len(k) for k in report["metrics"]) if report["metrics"] else 6
    lines += [f"{k:<{width}}  {v:10.4f}" for k, v in report["metrics"].items()]
    lines.append(f"{'seconds':<{width}}  {report['seconds']['total']:10.1f}  "
                 + " ".join(f"{k}={v:.1f}" for k, v in report["seconds"].items() if k != "total"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# sweep

def parse_temperatures(spec: str) -> list:
    """'0.6:1.4:0.1' (start:stop:step, stop included) or '0.7,1.0,1.3' -> list of floats."""
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            values = [round(start + i * step, 6) for i in range(int(math.floor((stop - start) / step + 1e-9)) + 1)]
        else:
            values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise AdvgenError(f"--temperatures '{spec}': use start:stop:step (e.g. 0.6:1.4:0.1) or a comma list") from None
    if not values or min(values) <= 0:
        raise AdvgenError(f"--temperatures '{spec}': temperatures must be positive")
    return values


SWEEP_MAX_N = 5  # BLEU-2..5 and Self-BLEU-2..5 per point: the orders of the published COCO tables


def sweep(folders: list, temperatures: list, n: int, out: str, top_p: float = 1.0, batch_size: int = 64,
          seed: int = 0, tokenize: str = "whitespace", realism: bool = True, resume: bool = False,
          progress=print) -> list:
    """Sample each run at each temperature -> rows of quality and diversity; writes sweep.csv (after every point),
    sweep.png and each point's samples (samples/<run>/T<temperature>.txt.gz). With `resume`, the points already in
    OUT/sweep.csv whose samples file exists are kept and not sampled again. `realism`: score the samples with the
    run's discriminator, where it has one."""
    if n < 2:
        raise AdvgenError(f"--n must be at least 2 (Self-BLEU compares samples with each other), got {n}")
    if batch_size < 1:
        raise AdvgenError(f"--batch-size must be positive, got {batch_size}")
    loaded = [runs.load(folder) for folder in folders]
    splits = [data.load_splits(run.cfg) for run in loaded]  # bad input fails before sampling
    names = [Path(r).name for r in folders]
    names = names if len(set(names)) == len(names) else [str(r) for r in folders]
    out = Path(out)
    rows = read_sweep(out / "sweep.csv") if resume and (out / "sweep.csv").is_file() else []
    done = {(r["run"], round(r["temperature"], 6)) for r in rows}
    orders = range(2, SWEEP_MAX_N + 1)
    for name, (run, cfg, _, model, tokenizer), split in zip(names, loaded, splits):
        todo = [t for t in temperatures if (name, round(t, 6)) not in done or not samples_path(out, name, t).is_file()]
        if not todo:
            continue
        ref_records = split["test"]
        device = models.resolve_device("auto")
        model.to(device)
        refs = metrics.tokens(texts_of(ref_records, cfg.field, "test split"), tokenize)
        examples = data.encode(tokenizer, ref_records, cfg)
        vocabulary = data.vocabulary(split["train"], cfg.field)
        scored = realism and (Path(run) / "discriminator").is_dir()
        discriminator = scorers.load_scorer(Path(run) / "discriminator", device) if scored else None
        for t in todo:
            clock = time.time()
            texts = runs.sample_texts(model, tokenizer, cfg, ref_records, n, batch_size=batch_size, seed=seed,
                                      temperature=t, top_p=top_p)
            save_samples(samples_path(out, name, t), texts)
            toks = metrics.tokens(texts, tokenize)
            bleu = metrics.bleu_scores(toks, refs, SWEEP_MAX_N).mean(axis=1)
            self_bleu = metrics.self_bleu_scores(toks, SWEEP_MAX_N).mean(axis=1)
            d = metrics.distinct(toks, 4)
            row = {"run": name, "temperature": t, "n": n,
                   **{f"bleu-{k}": float(bleu[k - 1]) for k in orders},
                   **{f"self-bleu-{k}": float(self_bleu[k - 1]) for k in orders},
                   "distinct-1": d[0], "distinct-2": d[1], "distinct-4": d[3],
                   "unique": metrics.unique_ratio(toks),
                   "word_validity": metrics.word_validity(texts, vocabulary)}
            nll, nll_per_word = metrics.nll_per_token_and_word(model, tokenizer, examples, batch_size,
                                                               next(model.parameters()).device, temperature=t)
            row.update({"nll": nll, "nll_per_word": nll_per_word,
                        "realism": rewards.realism(discriminator, texts).mean().item() if discriminator else None,
                        "seconds": round(time.time() - clock, 2)})
            rows = [r for r in rows if (r["run"], round(r["temperature"], 6)) != (name, round(t, 6))] + [row]
            write_sweep(out / "sweep.csv", rows)
            progress(", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if not rows:
        raise AdvgenError("nothing to sweep: no run and temperature")
    write_sweep(out / "sweep.csv", rows)
    plot_sweep(rows, out / "sweep.png")
    return rows


def samples_path(out: Path, name: str, temperature: float) -> Path:
    return Path(out) / "samples" / re.sub(r"[^\w.-]+", "_", name) / f"T{temperature:.2f}.txt.gz"


def write_sweep(path: Path, rows: list) -> None:
    """sweep.csv, written atomically: one row per (run, temperature), the columns of the first row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    with atomic(path) as tmp:
        tmp.write_text(buffer.getvalue())


def read_sweep(path) -> list:
    """sweep.csv -> rows with numbers as numbers and empty cells as None (the run name stays a string)."""
    try:
        rows = list(csv.DictReader(Path(path).open()))
    except (OSError, csv.Error) as e:
        raise AdvgenError(f"cannot read sweep {path}: {e}") from None
    if not rows or "run" not in rows[0] or "temperature" not in rows[0]:
        raise AdvgenError(f"sweep {path} has no rows with 'run' and 'temperature' columns")
    try:
        return [{k: v if k == "run" else None if v == "" else int(v) if k == "n" else float(v) for k, v in r.items()}
                for r in rows]
    except ValueError as e:
        raise AdvgenError(f"sweep {path}: {e}") from None


def save_samples(path: Path, texts: list) -> None:
    """One sample per line, gzipped with no time stamp (the same samples give the same bytes), written atomically,
    so a table can be recomputed from the committed samples."""
    lines = "".join(" ".join(t.split()) + "\n" for t in texts)  # a sample with a newline stays one line
    with atomic(path, suffix=".gz") as tmp:
        tmp.write_bytes(gzip.compress(lines.encode(), mtime=0))


def plot_sweep(rows: list, path: Path) -> None:
    """Quality against diversity, one curve per run, each point labelled with its temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("bleu-4", "BLEU-4 vs test (higher: closer to the data)"),
              ("nll", "test NLL per token at that temperature (lower: better)")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (key, label) in zip(axes, panels):
        for name in dict.fromkeys(r["run"] for r in rows):
            points = [r for r in rows if r["run"] == name]
            xs, ys = [r["self-bleu-4"] for r in points], [r[key] for r in points]
            ax.plot(xs, ys, marker="o", label=name)
            for r, x, y in zip(points, xs, ys):
                ax.annotate(f"{r['temperature']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel("Self-BLEU-4 (lower: more diverse)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"temperature sweep, {rows[0]['n']} samples per point")
    fig.tight_layout()
    with atomic(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
