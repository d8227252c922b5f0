import json
import math
import random

import pytest
import torch
from click.testing import CliRunner

from advgen import data, rewards, scorers
from advgen.train_scorer import _natural
from advgen.cli import main
from advgen.errors import AdvgenError
from advgen.rewards import RewardMixer

TINY = ["--model", "scratch:bert-tiny", "--batch-size", "16", "--max-length", "24", "--eval-every", "4",
        "--lr", "1e-3", "--warmup-steps", "1"]


# --- the mixer ---------------------------------------------------------------------------------------------

def test_mixer_divides_each_component_by_its_spread_and_weights_it():
    mix = RewardMixer({"realism": 1.0, "style": 2.0, "click": 0.0})
    realism, style = torch.tensor([0.1, 0.3, 0.5, 0.7]), torch.tensor([0.9, 0.9, 0.8, 1.0])
    total, parts = mix({"realism": realism, "style": style})  # click has weight 0: not needed
    std_r, std_s = math.sqrt(0.05), math.sqrt(0.005)  # population std of each batch
    assert torch.allclose(total, realism / std_r + 2 * style / std_s, atol=1e-5)
    assert set(parts) == {"realism", "style"} and torch.equal(parts["realism"], realism)

    # the second batch's spread is the moving average of the variances: 0.99 * old + 0.01 * new
    realism2, style2 = torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5])
    total2, _ = mix({"realism": realism2, "style": style2})
    var_r, var_s = 0.99 * 0.05 + 0.01 * 0.25, 0.99 * 0.005 + 0.01 * 0.0
    assert torch.allclose(total2, realism2 / math.sqrt(var_r) + 2 * style2 / math.sqrt(var_s), atol=1e-5)

    restored = RewardMixer({"realism": 1.0, "style": 2.0})
    restored.load_state_dict(mix.state_dict())
    assert torch.equal(restored({"realism": realism, "style": style})[0], mix({"realism": realism, "style": style})[0])


def test_mixer_floors_the_spread_of_a_constant_component():
    total, _ = RewardMixer({"click": 1.0})({"click": torch.full((8,), 0.6)})
    assert torch.allclose(total, torch.full((8,), 60.0))  # 0.6 / 0.01, not 0.6 / 0


@pytest.mark.parametrize("weights, message", [
    ({"realism": 0.0, "style": 0.0}, "all zero"),
    ({}, "all zero"),
    ({"realism": -1.0}, "non-negative"),
    ({"realism": float("nan")}, "non-negative"),
    ({"fluency": 1.0}, "unknown reward component"),
])
def test_mixer_rejects_impossible_weights(weights, message):
    with pytest.raises(AdvgenError, match=message):
        RewardMixer(weights)


def test_mixer_needs_every_weighted_component():
    with pytest.raises(AdvgenError, match="style"):
        RewardMixer({"realism": 1.0, "style": 1.0})({"realism": torch.rand(4)})


# --- scorers -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return scorers.new_discriminator("scratch:bert-tiny", max_length=16, seed=0)


def test_scorers_return_one_probability_per_text_for_empty_and_long_texts(tiny):
    texts = ["", "lovely summer dress", "word " * 5000, "", "runs small"]
    p = rewards.realism(tiny, texts, batch_size=2)
    assert p.shape == (5,) and torch.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    # a long text is cut to max_length tokens: it scores like its first 14 words ([CLS] + 14 + [SEP] = 16)
    assert torch.allclose(p[2], rewards.realism(tiny, ["word " * 14])[0], atol=1e-6)
    assert torch.allclose(p[0], p[3])
    assert rewards.realism(tiny, []).shape == (0,)


def test_scores_do_not_depend_on_batching_or_order(tiny):
    texts = [" ".join(["fits"] * n) for n in (1, 7, 3, 12, 5, 2)]
    whole = scorers.probabilities(tiny, texts, batch_size=64)
    assert torch.allclose(whole.sum(1), torch.ones(6), atol=1e-6)
    assert torch.allclose(scorers.probabilities(tiny, texts, batch_size=1), whole, atol=1e-5)
    assert torch.allclose(scorers.probabilities(tiny, texts[::-1], batch_size=4), whole.flip(0), atol=1e-5)
    for training in (True, False):  # scoring runs without dropout and gives the model back in its mode
        tiny.model.train(training)
        assert torch.allclose(rewards.realism(tiny, texts), whole[:, 1], atol=1e-6)
        assert tiny.model.training == training


def test_prefix_realism_scores_every_prefix_and_its_last_is_the_samples_own_score(tiny):
    from advgen import models, sampling
    tok = models.gpt2_tokenizer()
    texts = ["lovely summer dress", "runs small", "a"]
    ids = [tok.encode(" " + x) + [tok.eos_token_id] for x in texts]
    N = max(map(len, ids)) + 2
    tokens = torch.tensor([row + [tok.eos_token_id] * (N - len(row)) for row in ids])
    mask = torch.arange(N)[None] < torch.tensor([len(row) for row in ids])[:, None]
    samples = sampling.Samples(tokens, mask, torch.zeros(3, N), torch.zeros(3, N))
    p = rewards.prefix_realism(tiny, tok, samples)
    assert p.shape == (3, N) and torch.equal(p[~mask], torch.zeros(int((~mask).sum())))
    full = rewards.realism(tiny, sampling.decode(tok, samples))
    for i, row in enumerate(ids):
        # the prefix ending at EOS decodes as the sample does; the one before it is the same text (scored once)
        assert p[i, len(row) - 1] == pytest.approx(float(full[i]), abs=1e-6)
        assert p[i, len(row) - 2] == p[i, len(row) - 1]
        for j in range(len(row) - 1):
            want = rewards.realism(tiny, [tok.decode(row[:j + 1]).strip()])[0]
            assert p[i, j] == pytest.approx(float(want), abs=1e-6)


def test_style_scores_each_text_against_its_own_target():
    model, tokenizer, _ = scorers.new_discriminator("scratch:bert-tiny", max_length=16, seed=1)
    scorer = scorers.Scorer(model.eval(), tokenizer, {"kind": "style", "labels": ["Bottoms", "Dresses"], "max_length": 16})
    texts = ["wide leg pants", "maxi dress", "jeans"]
    probs = scorers.probabilities(scorer, texts)
    own = rewards.style(scorer, texts, ["Bottoms", "Dresses", "Dresses"])
    assert torch.allclose(own, torch.stack([probs[0, 0], probs[1, 1], probs[2, 1]]))
    assert torch.allclose(rewards.style(scorer, texts, "Dresses"), probs[:, 1])
    with pytest.raises(AdvgenError, match="'Tops' is not a label"):
        rewards.style(scorer, texts, "Tops")
    with pytest.raises(AdvgenError, match="2 targets for 3 texts"):
        rewards.style(scorer, texts, ["Bottoms", "Dresses"])


def test_discriminator_learns_real_from_shuffled_words():
    reviews = [r["review"] for r in data.load_corpus("default") if len(str(r.get("review") or "").split()) >= 16]
    texts = [" ".join(t.split()[:16]) for t in reviews[:564]]
    rng = random.Random(0)

    def shuffled(text):
        words = text.split()
        rng.shuffle(words)
        return " ".join(words)

    disc = scorers.new_discriminator("minilm-l6", max_length=32, seed=0)
    optimizer = torch.optim.AdamW(disc.model.parameters(), lr=5e-5)
    torch.manual_seed(0)
    for step in range(30):
        real = texts[16 * step:16 * step + 16]
        logged = scorers.discriminator_step(disc, optimizer, real, [shuffled(t) for t in real])
    assert set(logged) == {"disc/loss", "disc/d_real", "disc/d_fake", "disc/accuracy", "disc/grad_norm"}
    held_out = texts[500:]
    p_real, p_fake = rewards.realism(disc, held_out), rewards.realism(disc, [shuffled(t) for t in held_out])
    accuracy = ((p_real > 0.5).float().mean() + (p_fake < 0.5).float().mean()) / 2
    assert accuracy > 0.8 and p_real.mean() - p_fake.mean() > 0.3, (accuracy, p_real.mean(), p_fake.mean())


def test_a_saved_discriminator_loads_back_as_a_scorer(tmp_path, tiny):
    scorers.save_scorer(tiny, tmp_path / "discriminator")
    loaded = scorers.load_scorer(tmp_path / "discriminator")
    assert loaded.info == tiny.info
    texts = ["soft sweater", ""]
    assert torch.allclose(rewards.realism(loaded, texts), rewards.realism(tiny, texts), atol=1e-6)
    with pytest.raises(AdvgenError, match="not a scorer folder"):
        scorers.load_scorer(tmp_path / "nothing")


# --- labels and `advgen train-scorer` ----------------------------------------------------------------------

def test_labels():
    assert [scorers.label_of({"rating": r}, "style", "sentiment") for r in (1, 2, 3, 4, 5)] == \
        ["negative", "negative", "neutral", "positive", "positive"]
    assert scorers.label_of({"sentiment": "mixed", "rating": 5}, "style", "sentiment") == "mixed"  # a real column wins
    assert [scorers.label_of({"feedback_count": c}, "click", "feedback_count", 3) for c in (0, 2, 3, 40)] == \
        ["not engaged", "not engaged", "engaged", "engaged"]
    assert scorers.label_of({"department": None}, "style", "department") is None
    assert sorted(["10", "2", "1"], key=_natural) == ["1", "2", "10"]
    with pytest.raises(AdvgenError, match="must be a number"):
        scorers.label_of({"feedback_count": "many"}, "click", "feedback_count")


def train_scorer(*args):
    return CliRunner().invoke(main, ["train-scorer", *TINY, *map(str, args)])


@pytest.mark.parametrize("kind, label", [("style", "rating"), ("click", "feedback_count")])
def test_train_scorer_writes_a_scorer_with_its_held_out_quality(tmp_path, kind, label):
    out = tmp_path / "scorer"
    result = train_scorer("--kind", kind, "--label", label, "--max-steps", 8, "--out", out)
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "tokenizer.json", "scorer.json", "summary.json", "metrics.jsonl"} <= \
        {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the work folder is gone
    info = json.loads((out / "scorer.json").read_text())
    assert info["labels"] == (["1", "2", "3", "4", "5"] if kind == "style" else ["not engaged", "engaged"])
    assert info["field"] == "title" and info["max_length"] == 24 and info["config"]["max_steps"] == 8
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["test"]) == {"scorer", "majority", "bow_logreg"} | ({"bow_ridge_log1p"} if kind == "click" else set())
    test = summary["test"]
    if kind == "style":
        confusion = test["scorer"]["confusion"]
        assert len(confusion) == 5 and sum(map(sum, confusion)) == summary["test_examples"]
        assert [sum(row) for row in confusion] == summary["test_class_counts"]
        assert test["majority"]["accuracy"] == pytest.approx(max(summary["test_class_counts"]) / summary["test_examples"])
        assert 0 < test["bow_logreg"]["macro_f1"] <= 1
        for model in test.values():  # one true class: recall@1 is accuracy; 5 classes ranked: recall@5 is 1
            assert model["recall@1"] == pytest.approx(model["accuracy"]) == pytest.approx(model["precision@1"])
            assert model["recall@1"] <= model["recall@3"] <= model["recall@5"] == 1
            assert model["precision@3"] == pytest.approx(model["recall@3"] / 3)
    else:
        assert test["majority"]["roc_auc"] == 0.5 and 0.5 < test["bow_logreg"]["roc_auc"] < 1
        assert -1 <= test["scorer"]["spearman"] <= 1 and 0 < test["bow_ridge_log1p"]["spearman"] < 1
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "val/loss" in m] == [4, 8]

    scorer = scorers.load_scorer(out)
    texts = ["great jeans", "", "too small " * 100]
    scores = rewards.style(scorer, texts, "5") if kind == "style" else rewards.click(scorer, texts)
    assert scores.shape == (3,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("setup, args, message", [
    (None, ["--label", "colour"], "no label (--label) column 'colour'"),
    (None, ["--field", "headline"], "no text field (--field) column 'headline'"),
    ('{"title": "a", "brand": "x"}\n{"title": "b", "brand": "x"}\n', ["--corpus", "{tmp}/c.jsonl", "--label", "brand"],
     "label 'brand' is constant"),
    (None, ["--kind", "click", "--threshold", "100000"], "--threshold 100000 leaves a class empty"),
    (None, ["--kind", "click", "--label", "department"], "must be a number"),
    (None, ["--kind", "fluency"], "--kind must be one of style, click"),
    (None, ["--model", "scratch:bert-huge"], "unknown discriminator spec"),
    (None, ["--batch-size", "0"], "--batch-size must be positive"),
    (None, ["--corpus", "{tmp}/missing.csv"], "corpus not found"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, setup, args, message):
    if setup is not None:
        (tmp_path / "c.jsonl").write_text(setup)
    result = train_scorer("--out", tmp_path / "scorer", "--max-steps", 2, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == (["c.jsonl"] if setup else [])


def test_existing_scorer_folder_is_left_alone(tmp_path):
    (tmp_path / "scorer").mkdir()
    (tmp_path / "scorer" / "notes.txt").write_text("keep me")
    result = train_scorer("--out", tmp_path / "scorer", "--max-steps", 2)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert [p.name for p in (tmp_path / "scorer").iterdir()] == ["notes.txt"]


# --- scoring texts: `advgen score`, `advgen evaluate --scorer`, `advgen sample --best-of` -------------------

@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A style scorer of department, a click scorer, and a generator conditioned on department (all tiny)."""
    root = tmp_path_factory.mktemp("scored")
    for kind, label in (("style", "department"), ("click", "feedback_count")):
        result = train_scorer("--kind", kind, "--label", label, "--max-steps", 4, "--out", root / f"{kind}-{label}")
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, [
        "pretrain", "--generator", "scratch:gpt2-tiny", "--batch-size", "8", "--eval-batches", "1", "--num-samples", "1",
        "--max-target-tokens", "8", "--max-steps", "2", "--eval-every", "2", "--test-batches", "1",
        "--condition", "department", "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def test_score_command_writes_one_score_per_text_and_scorer(scored, tmp_path):
    rows = [{"text": "love this dress, so flattering", "department": "Dresses"},
            {"text": "the jacket is warm", "department": "Jackets"}, {"text": "", "department": "Tops"}]
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scores.jsonl"
    style_dir, click_dir = scored / "style-department", scored / "click-feedback_count"
    result = CliRunner().invoke(main, ["score", str(texts), "--scorer", str(style_dir), "--scorer", str(click_dir),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in out.read_text().splitlines()]
    style, click = scorers.load_scorer(style_dir), scorers.load_scorer(click_dir)
    p = scorers.probabilities(style, [r["text"] for r in rows])
    labels = style.info["labels"]
    for row, g, probs in zip(rows, got, p):
        assert {k: g[k] for k in row} == row  # the file's columns carried over
        # a style score is P(the row's own label); its label, the scorer's top class
        assert g["style-department"] == pytest.approx(float(probs[labels.index(row["department"])]), abs=1e-6)
        assert g["style-department/label"] == labels[int(probs.argmax())]
    assert [g["click-feedback_count"] for g in got] == pytest.approx(
        rewards.click(click, [r["text"] for r in rows]).tolist(), abs=1e-6)
    # A .txt file has no labels: the style score is the top class's probability.
    plain = tmp_path / "texts.txt"
    plain.write_text("love this dress\nthe jacket is warm\n")
    assert CliRunner().invoke(main, ["score", str(plain), "--scorer", str(style_dir), "--out", str(out)]).exit_code == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    p = scorers.probabilities(style, ["love this dress", "the jacket is warm"])
    assert [g["style-department"] for g in got] == pytest.approx(p.max(1).values.tolist(), abs=1e-6)


@pytest.mark.parametrize("args,message", [
    (["--scorer", "{root}/missing"], "is not a scorer folder"),
    (["--scorer", "{root}/run"], "is not a scorer folder"),
    (["--scorer", "{root}/style-department", "--scorer", "{root}/copy/style-department"], "two scorers named"),
    (["--scorer", "{root}/style-department", "--field", "review"], "has no 'review' or 'text' field"),
])
def test_score_command_bad_input_exits_2_and_keeps_the_old_file(scored, tmp_path, args, message):
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "style-department").symlink_to(scored / "style-department")
    texts = tmp_path / "texts.csv"
    texts.write_text("title,department\nnice,Dresses\n")
    out = tmp_path / "scores.jsonl"
    out.write_text("keep me\n")
    args = [a.format(root=scored).replace(f"{scored}/copy", str(tmp_path / "copy")) for a in args]
    result = CliRunner().invoke(main, ["score", str(texts), "--field", "title", *args, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.strip().count("\n") == 0, result.output
    assert out.read_text() == "keep me\n"


def test_evaluate_reports_each_scorers_verdict_on_the_samples(scored, tmp_path):
    samples = tmp_path / "samples.jsonl"
    rows = [{"text": t, "condition": {"department": d}} for t, d in
            [("pretty summer dress", "Dresses"), ("warm coat", "Jackets"), ("soft tee", "Tops"), ("jeans", "Bottoms"),
             ("a long maxi dress", "Dresses")]]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    style_dir, click_dir = scored / "style-department", scored / "click-feedback_count"
    result = CliRunner().invoke(main, ["evaluate", str(samples), "--references", str(samples), "--metrics", "distinct",
                                       "--scorer", str(style_dir), "--scorer", str(click_dir),
                                       "--out", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    values = json.loads((tmp_path / "report.json").read_text())["metrics"]
    style = scorers.load_scorer(style_dir)
    p = scorers.probabilities(style, [r["text"] for r in rows])
    labels = style.info["labels"]
    targets = [labels.index(r["condition"]["department"]) for r in rows]
    hits = [int(p[i].argmax()) == t for i, t in enumerate(targets)]
    assert values["style-accuracy/style-department"] == pytest.approx(sum(hits) / 5)
    # Per target label, and their mean: the two Dresses prompts count as one label.
    assert values["style-accuracy/style-department/Dresses"] == pytest.approx((hits[0] + hits[4]) / 2)
    assert values["style-accuracy/style-department/Jackets"] == hits[1]
    assert values["style-balanced-accuracy/style-department"] == pytest.approx(
        ((hits[0] + hits[4]) / 2 + hits[1] + hits[2] + hits[3]) / 4)
    assert values["style-p/style-department"] == pytest.approx(float(sum(p[i, t] for i, t in enumerate(targets)) / 5), abs=1e-6)
    click = rewards.click(scorers.load_scorer(click_dir), [r["text"] for r in rows])
    assert values["click/click-feedback_count"] == pytest.approx(float(click.mean()), abs=1e-6)
    # From a run: each sample is judged against its own prompt's department.
    result = CliRunner().invoke(main, ["evaluate", str(scored / "run"), "--n", "6", "--metrics", "distinct",
                                       "--scorer", str(style_dir), "--out", str(tmp_path / "run.json")])
    assert result.exit_code == 0, result.output
    assert 0 <= json.loads((tmp_path / "run.json").read_text())["metrics"]["style-accuracy/style-department"] <= 1


def test_best_of_n_keeps_the_draw_the_scorer_rates_best(scored, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('{"department": "Dresses"}\n{"department": "Jackets"}\n')
    style_dir = scored / "style-department"

    def sample(out, *args):
        result = CliRunner().invoke(main, ["sample", str(scored / "run"), "--inputs", str(items), *args,
                                           "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in (tmp_path / out).read_text().splitlines()]

    # best-of-4 draws what --num-samples 4 draws (the same prompts in the same places, the same seed)
    every = sample("all.jsonl", "--num-samples", "4")
    best = sample("best.jsonl", "--best-of", "4", "--rerank-by", str(style_dir))
    assert len(best) == 2 and [b["row"] for b in best] == [1, 2]
    style = scorers.load_scorer(style_dir)
    p = rewards.style(style, [e["text"] for e in every], [e["condition"]["department"] for e in every])
    for k, b in enumerate(best):
        group = p[4 * k:4 * k + 4]
        assert b["text"] == every[4 * k + int(group.argmax())]["text"]
        assert b["rerank"]["score"] == pytest.approx(float(group.max()), abs=1e-6) and b["rerank"]["of"] == 4
    for args, message in ((["--best-of", "4"], "go together"), (["--rerank-by", str(style_dir)], "go together")):
        result = CliRunner().invoke(main, ["sample", str(scored / "run"), "--inputs", str(items), *args,
                                           "--out", str(tmp_path / "x.jsonl")])
        assert result.exit_code == 2 and message in result.output and not (tmp_path / "x.jsonl").exists()
