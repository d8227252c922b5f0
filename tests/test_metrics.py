import csv
import gzip
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from advgen import data, metrics, models, runs, scorers
from advgen.cli import main
from advgen.config import PretrainConfig
from advgen.errors import AdvgenError
from advgen.evaluate import parse_temperatures, read_sweep

COCO_TEST = Path(__file__).resolve().parent / "data" / "coco_test_700.txt"  # head of ../shared/data/coco_test.txt
SMOOTH = SmoothingFunction().method1


def nltk_bleu(refs, hyp, n):
    return sentence_bleu(refs, hyp, tuple(1.0 / n for _ in range(n)), smoothing_function=SMOOTH)


def random_corpus(rng, size, vocab, max_len):
    return [[f"w{rng.randrange(vocab)}" for _ in range(rng.randrange(0, max_len))] for _ in range(size)]


@pytest.mark.parametrize("seed", range(6))
def test_bleu_and_self_bleu_equal_nltk_on_random_corpora(seed):
    rng = random.Random(seed)
    # small vocabularies give many repeated n-grams (clipping) and many ties of length (brevity penalty);
    # empty and one-token sentences and duplicates occur too
    hyps = random_corpus(rng, rng.randrange(2, 40), rng.choice([3, 8, 30]), 12)
    hyps += [list(hyps[0]), []]
    refs = random_corpus(rng, rng.randrange(1, 40), rng.choice([3, 8, 30]), 15)
    ours, ours_self = metrics.bleu_scores(hyps, refs, 5), metrics.self_bleu_scores(hyps, 5)
    for n in range(1, 6):
        want = [nltk_bleu(refs, h, n) for h in hyps]
        want_self = [nltk_bleu(hyps[:i] + hyps[i + 1:], h, n) for i, h in enumerate(hyps)]
        np.testing.assert_allclose(ours[n - 1], want, rtol=0, atol=1e-9)
        np.testing.assert_allclose(ours_self[n - 1], want_self, rtol=0, atol=1e-9)
    assert ours_self.max() > 0 and ours.max() > 0


def test_bleu_and_self_bleu_equal_nltk_on_coco():
    test = COCO_TEST.read_text().splitlines()
    samples, refs = test[:200], test[200:700]
    self4 = metrics.self_bleu_scores(samples, 4)[3]
    want = [nltk_bleu([s.split() for s in samples[:i] + samples[i + 1:]], h.split(), 4) for i, h in enumerate(samples)]
    np.testing.assert_allclose(self4, want, rtol=0, atol=1e-9)
    bleu4 = metrics.bleu_scores(samples[:60], refs, 4)[3]
    want = [nltk_bleu([r.split() for r in refs], h.split(), 4) for h in samples[:60]]
    np.testing.assert_allclose(bleu4, want, rtol=0, atol=1e-9)
    assert metrics.self_bleu(samples, 4) == pytest.approx(np.mean(want_self := self4))
    assert 0.1 < np.mean(want_self) < 0.9


def test_self_bleu_never_uses_the_sentence_itself():
    # With itself among its references every sentence would score 1.
    samples = ["a red dress", "a blue skirt with pockets"]
    assert metrics.self_bleu(samples, 2) < 0.5
    assert metrics.self_bleu(samples + ["a red dress"], 2) > metrics.self_bleu(samples, 2)


def test_distinct_and_entropy_on_a_hand_computed_case():
    samples = ["a b a b", "a c"]
    # unigrams a b a b a c: 3 distinct of 6; bigrams ab ba ab ac: 3 distinct of 4; trigrams aba bab: 2 of 2
    assert metrics.distinct(samples, 3) == [3 / 6, 3 / 4, 2 / 2]
    h1 = -(3 / 6 * math.log(3 / 6) + 2 / 6 * math.log(2 / 6) + 1 / 6 * math.log(1 / 6))
    h2 = -(2 / 4 * math.log(2 / 4) + 2 * (1 / 4 * math.log(1 / 4)))
    h3 = math.log(2)
    assert metrics.entropy(samples, 3) == pytest.approx([h1, h2, h3], abs=1e-12)
    assert metrics.distinct(["a"], 2) == [1.0, 0.0]  # no bigram at all
    assert metrics.entropy(["x x x x"], 1) == [0.0]


def test_unique_ratio_and_ms_jaccard_by_hand():
    assert metrics.unique_ratio(["a b", "a  b", "c"]) == pytest.approx(2 / 3)  # same tokens -> same sample
    # per-sentence unigram counts: samples a 1, b .5, c .5; refs a 1, b 1 -> 1.5 / 2.5.
    # bigrams: samples ab .5, ac .5; refs ab 1 -> .5 / 1.5
    assert metrics.ms_jaccard(["a b", "a c"], ["a b"], 2) == pytest.approx(math.sqrt(0.6 * (1 / 3)))
    assert metrics.ms_jaccard(["a b c", "d e"], ["d e", "a b c"], 3) == pytest.approx(1.0)
    assert metrics.ms_jaccard(["a b"], ["c d"], 1) == 0.0


def test_tokenization_is_stated_and_forms_must_match():
    assert metrics.tokens(["Nice dress, runs small!"], "words") == [["Nice", "dress", ",", "runs", "small", "!"]]
    assert metrics.tokens(["Nice dress, runs small!"]) == [["Nice", "dress,", "runs", "small!"]]
    assert metrics.tokens(["A B"], str.lower) == ["a b"]  # any callable
    assert metrics.bleu([["a", "b"]], [["a", "b"]], 2) == pytest.approx(1.0)
    with pytest.raises(AdvgenError, match="differ in form"):
        metrics.bleu(["a b"], [["a", "b"]], 2)
    with pytest.raises(AdvgenError, match="mix"):
        metrics.self_bleu(["a b", ["a", "b"]], 2)
    with pytest.raises(AdvgenError, match="at least two"):
        metrics.self_bleu(["a b"], 2)


def test_fed_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)) @ rng.normal(size=(8, 8))
    assert abs(metrics.fed(x, x)) < 1e-9
    shift = np.eye(8)[0]
    # A pure shift leaves the covariance as it is, so FED is exactly the squared shift.
    values = [metrics.fed(x + d * shift, x) for d in (0.1, 0.5, 1.0, 2.0)]
    np.testing.assert_allclose(values, [0.01, 0.25, 1.0, 4.0], rtol=1e-7)
    # Against the textbook formula with scipy's matrix square root, on two different covariances.
    from scipy.linalg import sqrtm

    y = rng.normal(size=(1500, 8)) * np.linspace(0.5, 2, 8) + 0.3
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    want = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(cx + cy - 2 * sqrtm(cx @ cy).real)
    assert metrics.fed(x, y) == pytest.approx(want, rel=1e-8)


def test_packaged_encoder_embeddings_fed_and_mauve_offline():
    encoder = metrics.encoder()
    dresses = [f"{c} {f} dress with {d}" for c in ("red", "blue", "black", "green", "white")
               for f in ("silk", "cotton", "linen", "knit") for d in ("pockets", "buttons", "a belt")]
    news = [f"the {o} {v} the {t} on {d}" for o in ("minister", "council", "court", "bank") for v in ("approved", "rejected", "delayed")
            for t in ("budget", "plan", "merger", "rate change", "new law") for d in ("monday", "friday")][:60]
    e_dress, e_news = metrics.embed(dresses, *encoder), metrics.embed(news, *encoder)
    assert e_dress.shape == (60, 384) and np.allclose(np.linalg.norm(e_dress, axis=1), 1)
    model, tokenizer = encoder
    with torch.no_grad():  # each text alone, no padding: the mean of its token states, normalised
        alone = [torch.nn.functional.normalize(model(**tokenizer([t], return_tensors="pt")).last_hidden_state[0].mean(0), dim=0)
                 for t in (dresses[0], news[-1], "")]
    np.testing.assert_allclose(metrics.embed([news[-1], "", dresses[0]], *encoder, batch_size=2),
                               torch.stack(alone)[[1, 2, 0]].numpy(), atol=1e-5)
    assert abs(metrics.fed(e_dress, e_dress)) < 1e-9
    assert metrics.fed(e_dress[:30], e_dress[30:]) < metrics.fed(e_dress, e_news)
    assert metrics.mauve(e_dress, e_dress) > 0.9 > 0.5 > metrics.mauve(e_news, e_dress)


def test_mean_nll_with_temperature_is_the_cross_entropy_of_scaled_logits():
    model, tokenizer = models.load_generator("scratch:gpt2-tiny", seed=0)
    examples = [([tokenizer.eos_token_id], data.target_ids(tokenizer, t, 8)) for t in ["red dress", "a soft knit top"]]
    batch = data.collate(examples, tokenizer.pad_token_id)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    for t in (1.0, 0.7):
        want = torch.nn.functional.cross_entropy((logits / t).flatten(0, 1), labels.flatten(), ignore_index=-100)
        got = metrics.mean_nll(model, examples, 2, tokenizer.pad_token_id, "cpu", temperature=t)
        assert got == pytest.approx(float(want), rel=1e-5)


# -------------------------------------------------------------------------------------------
# advgen evaluate and advgen sweep

TITLES = [f"{a} {c} {g}" for a in ("lovely", "perfect", "cute", "comfy", "great", "pretty", "soft", "flattering")
          for c in ("red", "blue", "black", "green") for g in ("dress", "top", "skirt")]


def tiny_run(folder: Path, corpus: Path, discriminator: bool = False, seed: int = 0) -> Path:
    model, tokenizer = models.load_generator("scratch:gpt2-tiny", seed=seed)
    models.save(model, tokenizer, folder / "generator")
    runs.write_config(folder, PretrainConfig(out=str(folder), corpus=str(corpus), field="title",
                                             generator="scratch:gpt2-tiny", max_target_tokens=6))
    if discriminator:
        scorers.save_scorer(scorers.new_discriminator("scratch:bert-tiny", seed=seed), folder / "discriminator")
    return folder


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "titles.txt"
    path.write_text("\n".join(TITLES) + "\n")
    return path


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_evaluate_a_samples_file_writes_table_and_json(tmp_path):
    samples, refs = tmp_path / "samples.jsonl", tmp_path / "refs.txt"
    texts = TITLES[::3] + ["lovely red dress"]
    samples.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    refs.write_text("\n".join(TITLES[1::2]) + "\n")
    out = tmp_path / "report.json"
    result = cli("evaluate", samples, "--references", refs, "--metrics", "bleu,self-bleu,distinct,entropy,unique,ms-jaccard",
                 "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert report["n_samples"] == len(texts) and report["n_references"] == len(TITLES[1::2])
    assert m["bleu-4"] == pytest.approx(metrics.bleu(texts, TITLES[1::2], 4))
    assert m["self-bleu-3"] == pytest.approx(metrics.self_bleu(texts, 3))
    assert m["distinct-2"] == pytest.approx(metrics.distinct(texts, 2)[1])
    assert m["unique"] == pytest.approx(len(set(texts)) / len(texts))
    assert "fed" not in m and "nll" not in m
    assert "self-bleu-4" in result.output and "ms-jaccard-4" in result.output  # the table


def test_evaluate_a_run_draws_samples_and_scores_every_metric(tmp_path, corpus):
    run = tiny_run(tmp_path / "run", corpus)
    out = tmp_path / "report.json"
    result = cli("evaluate", run, "--references", "train", "--n", 24, "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    train = data.split(data.select(data.load_corpus(corpus), "title", plain_text=True), "train", "title")
    assert report["n_samples"] == 24 and report["n_references"] == len(train)
    assert set(report["metrics"]) >= {"bleu-4", "self-bleu-4", "distinct-4", "entropy-1", "unique", "ms-jaccard-4",
                                      "fed", "mauve", "nll", "ppl"}
    assert math.log(50257) - 1 < report["metrics"]["nll"] < math.log(50257) + 1  # an untrained model: about uniform
    # per word: the same total over the targets' whitespace words (EOS one more), fewer than their tokens
    tokenizer = models.gpt2_tokenizer()
    targets = [data.target_ids(tokenizer, r["title"], 6) for r in train]
    words, tokens = metrics.target_words(tokenizer, targets), sum(map(len, targets))
    assert report["metrics"]["nll_per_word"] == pytest.approx(report["metrics"]["nll"] * tokens / words, rel=1e-6)
    assert 0 <= report["metrics"]["word_validity"] <= 1
    assert report["metrics"]["references_word_validity"] == 1.0  # the train split's own words, by definition
    assert report["metrics"]["fed"] > 0


@pytest.mark.parametrize("setup, args, message", [
    ("empty", ["samples.txt"], "is empty"),
    ("no-text-field", ["samples.jsonl"], "has no 'title' or 'text' field"),
    ("not-json", ["samples.jsonl"], "is not JSON"),
    ("good", ["samples.txt", "--references", "tset"], "neither a split"),
    ("good", ["samples.txt", "--metrics", "bleu,nll"], "needs a run folder"),
    ("good", ["samples.txt", "--metrics", "blue"], "unknown metric"),
    ("good", ["missing.txt"], "no samples file or run folder"),
    ("good", ["samples.txt", "--references", "refs.jsonl"], "has no 'title' or 'text' field"),
    ("run-without-generator", ["run"], "is not a run folder"),
])
def test_evaluate_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, setup, args, message):
    monkeypatch.chdir(tmp_path)
    Path("samples.txt").write_text("" if setup == "empty" else "a red dress\na blue top\n")
    Path("samples.jsonl").write_text('{"title_x": "a"}\n' if setup == "no-text-field" else "a red dress\n")
    Path("refs.jsonl").write_text('{"name": "a red dress"}\n')
    Path("run").mkdir()
    Path("run/config.json").write_text("{}")
    result = cli("evaluate", *args, "--out", "report.json")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not Path("report.json").exists()


def test_evaluate_a_missing_reference_split_exits_2(tmp_path, corpus):
    one_title = tmp_path / "one.txt"
    one_title.write_text("lovely red dress\n")
    run = tiny_run(tmp_path / "run", one_title)
    result = cli("evaluate", run, "--references", "test", "--out", tmp_path / "r.json")
    assert result.exit_code == 2 and "split" in result.output and "empty" in result.output, result.output


def test_parse_temperatures():
    assert parse_temperatures("0.6:1.4:0.1") == pytest.approx([0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4])
    assert parse_temperatures("0.7, 1.0") == [0.7, 1.0]
    for bad in ("1:0.5:0.1", "a:b:c", "0:1:0.5", ""):
        with pytest.raises(AdvgenError):
            parse_temperatures(bad)


def test_sweep_writes_csv_and_plot_one_curve_per_run(tmp_path, corpus):
    a = tiny_run(tmp_path / "plain", corpus)
    b = tiny_run(tmp_path / "adversarial", corpus, discriminator=True, seed=1)
    out = tmp_path / "sweep"
    result = cli("sweep", a, b, "--temperatures", "0.5,1.5", "--n", 12, "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["run"], float(r["temperature"])) for r in rows] == [
        ("plain", 0.5), ("plain", 1.5), ("adversarial", 0.5), ("adversarial", 1.5)]
    for r in rows:
        assert 0 <= float(r["bleu-4"]) <= 1 and 0 <= float(r["self-bleu-4"]) <= 1 and 0 < float(r["distinct-1"]) <= 1
    assert all(r["realism"] == "" for r in rows[:2]) and all(0 < float(r["realism"]) < 1 for r in rows[2:])
    # the NLL is the temperature's: an untrained model is nearly uniform, and a higher temperature
    # flattens it further towards the uniform NLL, log V
    for cold, hot in (rows[0:2], rows[2:4]):
        assert abs(float(hot["nll"]) - math.log(50257)) < abs(float(cold["nll"]) - math.log(50257))
    assert all(float(r["nll_per_word"]) >= float(r["nll"]) and 0 <= float(r["word_validity"]) <= 1 for r in rows)
    assert (out / "sweep.png").stat().st_size > 10_000
    # each point's samples, from which its row recomputes
    saved = gzip.decompress((out / "samples" / "adversarial" / "T1.50.txt.gz").read_bytes()).decode().splitlines()
    assert len(saved) == 12
    assert float(rows[3]["self-bleu-4"]) == pytest.approx(metrics.self_bleu(saved, 4), abs=1e-12)
    assert float(rows[3]["distinct-2"]) == pytest.approx(metrics.distinct(saved, 4)[1], abs=1e-12)
    bad = cli("sweep", a, tmp_path / "nowhere", "--out", tmp_path / "s2")
    assert bad.exit_code == 2 and "not a run folder" in bad.output and not (tmp_path / "s2").exists()


def test_sweep_resume_keeps_finished_points_and_samples_the_rest(tmp_path, corpus):
    run = tiny_run(tmp_path / "plain", corpus)
    out = tmp_path / "sweep"
    assert cli("sweep", run, "--temperatures", "0.5,1.0", "--n", 12, "--out", out).exit_code == 0
    first = read_sweep(out / "sweep.csv")
    assert {f"bleu-{k}" for k in range(2, 6)} | {f"self-bleu-{k}" for k in range(2, 6)} <= set(first[0])
    (out / "samples" / "plain" / "T1.00.txt.gz").unlink()  # as if killed while writing that point
    result = cli("sweep", run, "--temperatures", "0.5,1.0,1.5", "--n", 12, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert result.output.count("run=plain") == 2  # 1.0 (no samples file) and 1.5; 0.5 was kept
    rows = read_sweep(out / "sweep.csv")
    assert [r["temperature"] for r in rows] == [0.5, 1.0, 1.5]
    assert rows[0] == first[0]  # the kept point, seconds and all
    assert rows[1]["self-bleu-4"] == first[1]["self-bleu-4"]  # the same seed draws the same samples again
    assert all((out / "samples" / "plain" / f"T{t:.2f}.txt.gz").is_file() for t in (0.5, 1.0, 1.5))


def test_target_words_and_word_validity():
    tokenizer = models.gpt2_tokenizer()
    whole = data.target_ids(tokenizer, "a red summer dress", 48)       # ends with EOS: 4 words + 1
    cut = data.target_ids(tokenizer, "a red summer dress", 3)          # cut: no EOS, the words it kept
    assert whole[-1] == tokenizer.eos_token_id and cut[-1] != tokenizer.eos_token_id
    assert metrics.target_words(tokenizer, [whole]) == 5
    assert metrics.target_words(tokenizer, [cut]) == len(tokenizer.decode(cut).split())
    vocabulary = data.vocabulary([{"title": "red dress"}, {"title": "blue top"}, {"title": None}], "title")
    assert vocabulary == {"red", "dress", "blue", "top"}
    assert metrics.word_validity(["red dress", "reddress top"], vocabulary) == 3 / 4
    assert metrics.word_validity([""], vocabulary) == 0.0


def test_word_validity_needs_a_split(tmp_path):
    (tmp_path / "s.txt").write_text("red dress\n")
    (tmp_path / "r.txt").write_text("red dress\n")
    result = cli("evaluate", tmp_path / "s.txt", "--references", tmp_path / "r.txt", "--metrics", "validity",
                 "--out", tmp_path / "o.json")
    assert result.exit_code == 2 and "needs a corpus split" in result.output
    ok = cli("evaluate", tmp_path / "s.txt", "--references", "test", "--metrics", "validity", "--out", tmp_path / "o.json")
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "o.json").read_text())["metrics"]["word_validity"] == 1.0


def test_treebank_tokenization_splits_punctuation_as_the_published_coco_tables_do():
    assert metrics.tokens(["a man's bike, parked by the road."], "treebank") == [
        ["a", "man", "'s", "bike", ",", "parked", "by", "the", "road", "."]]
    # BLEU under the treebank tokenization: the final period is a token of its own
    assert metrics.bleu(["a dog runs."], ["a dog runs."], 4, tokenize="treebank") == pytest.approx(1.0)


def test_texygen_protocol_is_bleu_and_self_bleu_2_to_5_on_treebank_words(tmp_path):
    samples = ["a man rides a horse.", "a dog on a couch.", "two cats sleep on a bed.", "a man rides a bike."]
    refs = ["a man rides a horse on a beach.", "a cat sleeps on a bed.", "a dog on the couch."]
    (tmp_path / "s.txt").write_text("\n".join(samples) + "\n")
    (tmp_path / "r.txt").write_text("\n".join(refs) + "\n")
    result = cli("evaluate", tmp_path / "s.txt", "--references", tmp_path / "r.txt", "--protocol", "texygen",
                 "--metrics", "distinct", "--out", tmp_path / "o.json")  # the protocol replaces --metrics
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["protocol"] == "texygen" and report["tokenize"] == "treebank"
    assert set(report["metrics"]) == {f"{m}-{k}" for m in ("bleu", "self-bleu") for k in (2, 3, 4, 5)}
    hyps, ref_tokens = metrics.tokens(samples, "treebank"), metrics.tokens(refs, "treebank")
    assert hyps[0][-1] == "."  # the final period is a word of its own
    for k in (2, 3, 4, 5):
        assert report["metrics"][f"bleu-{k}"] == pytest.approx(metrics.bleu(hyps, ref_tokens, k), abs=1e-12)
        assert report["metrics"][f"self-bleu-{k}"] == pytest.approx(metrics.self_bleu(hyps, k), abs=1e-12)


# -------------------------------------------------------------------------------------------
# paired metrics: each sample against its own item's reference

def test_paired_metrics_by_hand():
    values, signatures = metrics.paired(["red dress", "The Blue Top ", "a b c d e"], ["the red dress", "the blue top", "a b c d e"])
    # ROUGE-L F1 (rouge-score lower-cases): "red dress" in "the red dress": LCS 2, P 1, R 2/3 -> 0.8; then 1, 1
    assert values["rouge-l"] == pytest.approx(100 * (0.8 + 1 + 1) / 3)
    assert values["exact-match"] == pytest.approx(200 / 3)  # stripped and lower-cased: rows 2 and 3
    same, _ = metrics.paired(["the red dress", "a b c d e"], ["the red dress", "a b c d e"])
    assert same == pytest.approx({"sacrebleu": 100, "sentence-bleu": 100, "chrf": 100, "rouge-l": 100, "exact-match": 100})
    swapped, _ = metrics.paired(["a b c d e", "the red dress"], ["the red dress", "a b c d e"])  # no sample is its own
    assert swapped["exact-match"] == 0 and swapped["rouge-l"] == 0 and swapped["sacrebleu"] < 1
    assert signatures["bleu"].startswith("nrefs:1|") and "tok:13a" in signatures["bleu"]
    with pytest.raises(AdvgenError, match="one reference per sample"):
        metrics.paired(["a"], ["a", "b"])


def test_evaluate_pairs_each_sample_with_its_reference_column(tmp_path):
    rows = [{"text": t, "reference": r} for t, r in
            [("lovely red dress", "lovely red dress"), ("cute blue top", "cute black top"), ("soft skirt", "comfy green skirt")]]
    samples, refs = tmp_path / "samples.jsonl", tmp_path / "refs.txt"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    refs.write_text("\n".join(TITLES) + "\n")
    result = cli("evaluate", samples, "--references", refs, "--out", tmp_path / "auto.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "auto.json").read_text())
    want, signatures = metrics.paired([r["text"] for r in rows], [r["reference"] for r in rows])
    assert report["pairing"] == "paired" and report["sacrebleu"] == signatures
    assert {k: report["metrics"][k] for k in want} == pytest.approx(want)
    assert "bleu-4" not in report["metrics"] and "self-bleu-4" in report["metrics"]  # paired in place of all-refs BLEU
    assert "pairing     paired" in result.output
    result = cli("evaluate", samples, "--references", refs, "--pairing", "unpaired", "--out", tmp_path / "u.json")
    report = json.loads((tmp_path / "u.json").read_text())
    assert report["pairing"] == "unpaired" and "bleu-4" in report["metrics"] and "sacrebleu" not in report["metrics"]


@pytest.mark.parametrize("rows, args, message", [
    ([{"text": "a", "reference": "a"}, {"text": "b"}], ["--pairing", "paired"], "not every row"),
    ([{"text": "a"}], ["--metrics", "paired"], "need --pairing paired"),
    ([{"text": "a", "reference": "a"}], ["--protocol", "texygen", "--pairing", "paired"], "it is unpaired"),
])
def test_evaluate_impossible_pairing_exits_2(tmp_path, rows, args, message):
    samples, refs = tmp_path / "samples.jsonl", tmp_path / "refs.txt"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    refs.write_text("a\nb\n")
    result = cli("evaluate", samples, "--references", refs, *args, "--out", tmp_path / "r.json")
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r.json").exists()


def task_run(tmp_path, column: str, **task) -> tuple:
    """An untrained tiny run of a task over TITLES, whose last word is also `column` -> (run folder, corpus)."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"title": t, column: t.split()[-1], "product_id": i}) + "\n"
                              for i, t in enumerate(TITLES)))
    run = tmp_path / "run"
    model, tokenizer = models.load_generator("scratch:gpt2-tiny", seed=0)
    models.save(model, tokenizer, run / "generator")
    runs.write_config(run, PretrainConfig(out=str(run), corpus=str(corpus), generator="scratch:gpt2-tiny", **task))
    return run, corpus


def test_a_conditioned_run_is_evaluated_paired_and_samples_carry_their_reference(tmp_path):
    run, corpus = task_run(tmp_path, "department", field="title", condition=["department"], max_target_tokens=6)
    result = cli("evaluate", run, "--n", 8, "--metrics", "paired,distinct", "--out", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["pairing"] == "paired" and 0 <= report["metrics"]["chrf"] <= 100
    out = tmp_path / "s.jsonl"
    assert cli("sample", run, "--n", 6, "--out", out).exit_code == 0
    test = data.load_splits(PretrainConfig(corpus=str(corpus), field="title", condition=["department"]))["test"]
    for row in map(json.loads, out.read_text().splitlines()):  # the reference is the prompt row's own title
        assert any(r["title"] == row["reference"] and r["department"] == row["condition"]["department"] for r in test)
    assert cli("evaluate", out, "--metrics", "paired", "--out", tmp_path / "f.json").exit_code == 0
    assert json.loads((tmp_path / "f.json").read_text())["pairing"] == "paired"


# -------------------------------------------------------------------------------------------
# tags: a categorical target generated n times per item

def test_tags_rank_by_frequency_then_log_probability_by_hand():
    assert metrics.rank_tags(["Knits", "dresses", " knits ", "Dresses", "Blouses"], [-1, -3, -2, -0.5, -0.1]) == \
        ["dresses", "knits", "blouses"]  # 2, 2 (dresses' best sample -0.5 beats knits' -1), 1
    samples = [[("Knits", -1.0), ("Dresses", -2.0), ("knits", -1.5)],  # item 1: truth knits, ranked knits, dresses
               [("Pants", -1.0), ("Jeans", -2.0), ("Skirts", -0.5)]]   # item 2: truth jeans, ranked skirts, pants, jeans
    values = metrics.tag_scores(samples, ["Knits", "Jeans"], ks=(1, 2, 3))
    assert values["tag-accuracy"] == pytest.approx(3 / 6)
    assert values["precision@1"] == pytest.approx((1 + 0) / 2) and values["recall@1"] == pytest.approx(0.5)
    assert values["precision@2"] == pytest.approx((1 / 2 + 0) / 2) and values["recall@2"] == pytest.approx(0.5)
    assert values["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2) and values["recall@3"] == pytest.approx(1.0)
    multi = metrics.tag_scores([[("a", 0.0), ("b", -1.0)]], [{"a", "b", "c"}], ks=(2,))  # a set of true tags
    assert multi["precision@2"] == 1.0 and multi["recall@2"] == pytest.approx(2 / 3)


def test_classifier_rankings_score_like_generated_tags_by_hand():
    from advgen.train_scorer import quality

    probs = np.array([[0.5, 0.3, 0.2],   # truth 1: ranked 0, 1, 2 -> found at rank 2
                      [0.1, 0.2, 0.7],   # truth 2: found at rank 1
                      [0.4, 0.4, 0.2]])  # truth 1: a tie ranks the lower class first (0, 1, 2) -> rank 2
    scores = quality("style", probs, np.array([1, 2, 1]), None)
    assert scores["accuracy"] == pytest.approx(1 / 3) == pytest.approx(scores["precision@1"])
    assert scores["recall@3"] == 1.0 and scores["precision@3"] == pytest.approx(1 / 3)
    assert metrics.ranking_scores([[2, 0, 1]], [0], ks=(1, 2)) == {"precision@1": 0.0, "recall@1": 0.0,
                                                                  "precision@2": 0.5, "recall@2": 1.0}
    with pytest.raises(AdvgenError, match="one truth per item"):
        metrics.ranking_scores([[0, 1]], [0, 1])


def test_evaluate_tags_of_a_run(tmp_path):
    run, _ = task_run(tmp_path, "class", field="class", source="title", max_target_tokens=3)
    result = cli("evaluate", run, "--metrics", "tags", "--tag-samples", 4, "--tag-k", "1,2", "--out", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    values = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert set(values) == {"tag-accuracy", "precision@1", "recall@1", "precision@2", "recall@2"}
    assert all(0 <= v <= 1 for v in values.values())
    for args, message in ((["--tag-k", "x"], "--tag-k: expected"), (["--tag-samples", "0"], "must be positive")):
        result = cli("evaluate", run, "--metrics", "tags", *args, "--out", tmp_path / "bad.json")
        assert result.exit_code == 2 and message in result.output, result.output
    samples = tmp_path / "s.txt"
    samples.write_text("a\n")
    result = cli("evaluate", samples, "--metrics", "tags", "--out", tmp_path / "bad.json")
    assert result.exit_code == 2 and "the tags metric needs a run folder" in result.output


def test_a_bare_model_is_measured_on_a_runs_task(tmp_path):
    run, corpus = task_run(tmp_path, "department", field="title", condition=["department"], max_target_tokens=6)
    args = ["--n", 8, "--metrics", "paired,distinct,nll"]
    assert cli("evaluate", run, *args, "--out", tmp_path / "own.json").exit_code == 0
    # Another run folder (another task: no condition, 2 tokens) whose generator has the same weights, on this
    # run's task: the same prompts, references and draws, so this run's own report.
    other = tmp_path / "other"
    models.save(*models.load_generator("scratch:gpt2-tiny", seed=0), other / "generator")
    runs.write_config(other, PretrainConfig(out=str(other), corpus=str(corpus), field="title", max_target_tokens=2))
    result = cli("evaluate", other, "--task-from", run, *args, "--out", tmp_path / "same.json")
    assert result.exit_code == 0, result.output
    own, same = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("own", "same"))
    assert same["metrics"] == own["metrics"] and same["task_from"] == str(run) and own["task_from"] is None
    # A bare spec: a differently initialised model, measured on the same prompts and references.
    result = cli("evaluate", "scratch:gpt2-tiny", "--task-from", run, *args, "--seed", 1, "--out", tmp_path / "bare.json")
    assert result.exit_code == 0, result.output
    bare = json.loads((tmp_path / "bare.json").read_text())
    assert (bare["n_samples"], bare["references"], bare["pairing"]) == (own["n_samples"], own["references"], "paired")
    for args, message in ((["scratch:gpt2-huge", "--task-from", run], "unknown generator spec"),
                          (["scratch:gpt2-tiny", "--task-from", tmp_path / "nowhere"], "is not a run folder"),
                          ([corpus, "--task-from", run], "not the samples file")):
        result = cli("evaluate", *args, "--out", tmp_path / "bad.json")
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "bad.json").exists()
