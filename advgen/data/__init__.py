"""Corpus loading and validation, deterministic splits, control prefixes, batches.

A training example is a prompt and a target. The prompt is the model's start token followed by
plain-text lines, one per condition and one for the source, then the target field's name:

    department: Dresses
    rating: 5
    review:

and the target is " <text>" followed by the end-of-sequence token. The loss counts only target
tokens. The same `prompt_ids` builds the prompts that later stages sample from (advgen.runs.prompt).
"""
import csv
import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Optional

import torch

from advgen import seeds
from advgen.errors import AdvgenError

DEFAULT_CORPUS = Path(__file__).with_name("womens_clothing_reviews.jsonl.gz")
SPLITS = {"train": (0, 80), "valid": (80, 90), "test": (90, 100)}  # buckets of 100, by group hash
HELD_OUT_SPLITS = {"train": (0, 90), "valid": (90, 100)}  # when the test split is a file of its own
IGNORE = -100  # label of tokens the loss skips


def corpus_path(path) -> Path:
    return DEFAULT_CORPUS if path in (None, "", "default") else Path(path)


def is_plain_text(path) -> bool:
    """A .txt corpus (optionally .gz): one text per line, read into the single field 'text'."""
    suffixes = [s.lower() for s in corpus_path(path).suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    return suffixes[-1:] == [".txt"]


def load_corpus(path) -> list:
    """Read a corpus into a list of dicts: .txt (one text per line, field 'text'), .jsonl or .csv (optionally .gz)."""
    path = corpus_path(path)
    if not path.is_file():
        raise AdvgenError(f"corpus not found: {path}")
    raw = path.read_bytes()
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise AdvgenError(f"corpus {path} is not valid gzip: {e}") from None
        suffixes = suffixes[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AdvgenError(f"corpus {path} is not UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start}") from None
    if not text.strip():
        raise AdvgenError(f"corpus {path} is empty")
    kind = suffixes[-1] if suffixes else ""
    if kind == ".txt":
        return [{"text": line.strip()} for line in text.splitlines() if line.strip()]
    if kind == ".jsonl":
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise AdvgenError(f"corpus {path} line {n} is not JSON: {e}") from None
            if not isinstance(record, dict):
                raise AdvgenError(f"corpus {path} line {n} is not a JSON object")
            records.append(record)
        return records
    if kind == ".csv":
        try:
            return list(csv.DictReader(io.StringIO(text)))
        except csv.Error as e:
            raise AdvgenError(f"corpus {path} is not valid CSV: {e}") from None
    raise AdvgenError(f"corpus {path}: unsupported format '{kind or path.name}' (use .txt, .jsonl, .csv, optionally .gz)")


def select(records: list, field: str, condition=(), source: Optional[str] = None, plain_text: bool = False) -> list:
    """Check that the named fields exist and keep the rows whose target (and source) is non-empty.
    plain_text: the records come from a .txt corpus, whose one column 'text' is the target whatever its name."""
    if plain_text and field != "text" and not condition and not source:
        records = [{field: r["text"]} for r in records]
    present = set().union(*(r.keys() for r in records))
    for name, role in [(field, "field")] + [(c, "condition") for c in condition] + ([(source, "source")] if source else []):
        if name not in present:
            raise AdvgenError(f"corpus has no {role} column '{name}' (columns: {', '.join(sorted(present))})")
    required = [field] + ([source] if source else [])
    kept = [r for r in records if all(str(r.get(k) or "").strip() for k in required)]
    if not kept:
        raise AdvgenError(f"no row of the corpus has a non-empty '{field}'")
    return kept


def split_of(record: dict, group_by: Optional[str], buckets: dict = SPLITS) -> str:
    """The split of a row: a stable hash of its group (product id), so no group spans two splits."""
    bucket = zlib.crc32(str(record.get(group_by)).encode()) % 100
    return next(name for name, (lo, hi) in buckets.items() if lo <= bucket < hi)


def split(records: list, name: str, group_by: Optional[str]) -> list:
    return [r for r in records if split_of(r, group_by) == name]


def default_group(records: list, field: str) -> str:
    return "product_id" if "product_id" in records[0] else field


def _ids(tokenizer, text: str) -> list:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def start_id(tokenizer) -> int:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def prompt_pieces(record: dict, field: str, condition=(), source=None) -> list:
    """The prompt after the start token, as (text, cut) pieces that are tokenized one by one: the condition lines,
    then the source's name, its text (cut: to max_source_tokens) and a newline, then the field's name."""
    pieces = [("".join(f"{c}: {str(record[c]).strip()}\n" for c in condition), False)] if condition else []
    if source:
        pieces += [(f"{source}:", False), (" " + str(record[source]).strip(), True), ("\n", False)]
    return pieces + [(f"{field}:", False)]


def prompt_ids(tokenizer, record: dict, field: str, condition=(), source=None, max_source_tokens=96) -> list:
    ids = [start_id(tokenizer)]
    for text, cut in prompt_pieces(record, field, condition, source):
        ids += _ids(tokenizer, text)[:max_source_tokens] if cut else _ids(tokenizer, text)
    return ids


def tokenizer_texts(records: list, cfg):
    """The strings a generator of this config reads, for learning a corpus tokenizer: each row's prompt pieces
    and its target."""
    for r in records:
        yield from (text for text, _ in prompt_pieces(r, cfg.field, cfg.condition, cfg.source))
        yield " " + str(r[cfg.field]).strip()


def vocabulary(records: list, field: str) -> set:
    """The whitespace words of a field over records (for word validity: samples' words found in the train split)."""
    return {w for r in records for w in str(r.get(field) or "").split()}


def target_ids(tokenizer, text: str, max_target_tokens: int) -> list:
    ids = _ids(tokenizer, " " + str(text).strip())
    if len(ids) > max_target_tokens:
        return ids[:max_target_tokens]  # cut texts end without EOS: the model must not learn to stop there
    return ids + [tokenizer.eos_token_id]


def encode(tokenizer, records: list, cfg) -> list:
    """Records -> list of (prompt ids, target ids)."""
    return [(prompt_ids(tokenizer, r, cfg.field, cfg.condition, cfg.source, cfg.max_source_tokens),
             target_ids(tokenizer, r[cfg.field], cfg.max_target_tokens)) for r in records]


def collate(examples: list, pad_id: int) -> dict:
    """Right-padded (B, T) input_ids, attention_mask, and labels with prompt and padding set to IGNORE."""
    T = max(len(p) + len(t) for p, t in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for i, (p, t) in enumerate(examples):
        n = len(p) + len(t)
        ids[i, :n] = torch.tensor(p + t)
        mask[i, :n] = 1
        labels[i, len(p):n] = torch.tensor(t)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches_per_epoch(n_examples: int, batch_size: int) -> int:
    """Batches of batch_at per epoch: the last partial batch of each permutation is dropped."""
    return max(n_examples // batch_size, 1)


def batch_at(examples: list, batch_size: int, seed: int, index: int, stream: str = "train") -> list:
    """The `index`-th batch of a stream of batches: epochs are seeded permutations, so a batch depends only on
    (seed, stream, index) and a resumed run sees the same data as an uninterrupted one. Each stream (a name,
    see advgen.seeds) has its own permutations. The "train" stream of `advgen pretrain` and `train-scorer`
    keeps the permutation seeds it has always had (seed * 100_003 + epoch), so that runs resume identically."""
    epoch, i = divmod(index, batches_per_epoch(len(examples), batch_size))
    order_seed = seed * 100_003 + epoch if stream == "train" else seeds.derive(seed, stream, epoch)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(order_seed))
    return [examples[j] for j in order[i * batch_size:(i + 1) * batch_size].tolist()]


def load_splits(cfg) -> dict:
    """Corpus -> {'train', 'valid', 'test'} record lists, split by group so no product spans two splits. With
    cfg.test_corpus, the test split is that file and the corpus splits into train and valid (HELD_OUT_SPLITS)."""
    rows = select(load_corpus(cfg.corpus), cfg.field, cfg.condition, cfg.source, is_plain_text(cfg.corpus))
    group = cfg.split_by or default_group(rows, cfg.field)
    if group not in rows[0]:
        raise AdvgenError(f"--split-by: corpus has no column '{group}'")
    buckets = HELD_OUT_SPLITS if cfg.test_corpus else SPLITS
    splits = {name: [r for r in rows if split_of(r, group, buckets) == name] for name in buckets}
    if cfg.test_corpus:
        splits["test"] = select(load_corpus(cfg.test_corpus), cfg.field, cfg.condition, cfg.source,
                                is_plain_text(cfg.test_corpus))
    for name, split_rows in splits.items():
        if not split_rows:
            raise AdvgenError(f"the {name} split is empty ({len(rows)} usable rows grouped by '{group}'); "
                              "use a larger corpus or another --split-by")
    return splits
