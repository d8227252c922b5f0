"""`advgen adversarial` on tiny from-config models: a complete run, exact resume after SIGKILL, bad input,
style and click rewards, and the NaN and mode-collapse guards."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from advgen import data, metrics, models, rewards, runs, sampling, scorers
from advgen.adversarial import adversarial
from advgen.cli import main
from advgen.config import AdversarialConfig
from advgen.errors import AdvgenError

# 4 prompts x 2 samples, 8 new tokens, a 2-layer BERT discriminator.
TINY = ["--discriminator", "scratch:bert-tiny", "--disc-max-length", "16", "--prompts-per-step", "4", "--k", "2",
        "--max-new-tokens", "8", "--gen-lr", "1e-3", "--disc-lr", "1e-3", "--eval-samples", "8"]
METRIC_KEYS = {"reward/realism_mean", "reward/realism_std", "reward/total_mean", "reward/shaped_mean",
               "reward/advantage_std", "reward/baseline_mean", "policy/kl", "policy/entropy", "policy/loss",
               "policy/grad_norm", "disc/d_real", "disc/d_fake", "disc/accuracy", "disc/loss", "charts/distinct2",
               "charts/distinct_texts", "charts/collapse_alarm", "charts/skipped"}


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def run_cli(*args):
    return CliRunner().invoke(main, ["adversarial", *TINY, *map(str, args)])


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    """A tiny pretrained generator conditioned on department (2 MLE steps are enough to have a run folder)."""
    out = tmp_path_factory.mktemp("init") / "run"
    result = CliRunner().invoke(main, ["pretrain", "--generator", "scratch:gpt2-tiny", "--discriminator", "scratch:bert-tiny",
                                       "--condition", "department", "--batch-size", "8", "--max-target-tokens", "8",
                                       "--max-steps", "2", "--eval-every", "2", "--eval-batches", "1", "--test-batches", "1",
                                       "--num-samples", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def scorer_folders(tmp_path_factory):
    """A style scorer (department) and a click scorer, untrained tiny BERTs with the scorer.json that
    `advgen train-scorer` writes."""
    root = tmp_path_factory.mktemp("scorers")
    departments = ["Bottoms", "Dresses", "Intimate", "Jackets", "Tops", "Trend"]
    for kind, label, labels in [("style", "department", departments),
                                ("click", "feedback_count", ["not engaged", "engaged"])]:
        model, tokenizer = models.load_discriminator("scratch:bert-tiny", num_labels=len(labels), seed=1)
        models.save(model, tokenizer, root / kind, files={"scorer.json": {
            "kind": kind, "label": label, "labels": labels, "field": "title", "max_length": 16,
            "threshold": 1 if kind == "click" else None, "model": "scratch:bert-tiny"}})
    return root


def test_run_trains_both_models_and_logs_everything(init, tmp_path):
    out = tmp_path / "adv"
    result = run_cli("--init", init, "--out", out, "--max-steps", 3, "--checkpoint-every", 2, "--log-samples-every", 1,
                     "--mle-every", 2, "--entropy-coef", 0.01, "--kl-coef", 0.1, "--disc-warmup", 2,
                     "--disc-warmup-lr", 1e-3, "--disc-lr", 2e-5)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "config.json", "discriminator", "generator",
                                                     "metrics.jsonl", "samples.jsonl", "summary.json", "tb"]
    # Every generator parameter moved (GPT-2 ties lm_head to wte, so the file holds each tensor once).
    before, after = load_file(init / "generator" / "model.safetensors"), load_file(out / "generator" / "model.safetensors")
    assert before.keys() == after.keys()
    assert [name for name in before if torch.equal(before[name], after[name])] == []
    # ... and every discriminator parameter (against the same encoder freshly built from the same seed).
    fresh = scorers.new_discriminator("scratch:bert-tiny", 16, seed=0).model.state_dict()
    trained = load_file(out / "discriminator" / "model.safetensors")
    assert [name for name in trained if torch.equal(trained[name], fresh[name])] == []
    assert json.loads((out / "discriminator" / "scorer.json").read_text())["labels"] == ["generated", "real"]

    warmup = [r for r in rows(out / "metrics.jsonl") if "disc_warmup/d_fake" in r]
    assert [r["step"] for r in warmup] == [0] and 0 < warmup[0]["disc_warmup/d_fake"] < 1
    # The warm-up ran at its own learning rate; the adversarial steps at --disc-lr.
    disc_groups = torch.load(out / "checkpoint" / "state.pt", weights_only=False)["disc_optimizer"]["param_groups"]
    assert {group["lr"] for group in disc_groups} == {2e-5}
    metrics = [r for r in rows(out / "metrics.jsonl") if "policy/loss" in r]
    assert [r["step"] for r in metrics] == [1, 2, 3]
    for r in metrics:
        assert METRIC_KEYS <= set(r), METRIC_KEYS - set(r)
        assert all(math.isfinite(v) for v in r.values()), r
        assert r["charts/skipped"] == 0
    assert [r["step"] for r in metrics if "losses/mle" in r] == [2]
    assert metrics[0]["policy/kl"] == 0.0 and metrics[1]["policy/kl"] != 0.0  # the policy leaves the init model
    samples = rows(out / "samples.jsonl")
    assert [s["step"] for s in samples] == [1] * 4 + [2] * 4 + [3] * 4
    assert samples[0]["prompt"].startswith("department: ") and {"realism", "reward", "advantage"} <= set(samples[0])

    # Later stages read the run like a pretrain run.
    _, cfg, _, model, _ = runs.load(out)
    assert cfg.condition == ["department"] and model.config.n_layer == 2
    stored = json.loads((out / "config.json").read_text())
    assert stored["adversarial"]["baseline"] == "loo" and stored["adversarial"]["init"] == str(init)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and 0 <= summary["d_fake_end"] <= 1 and summary["skipped_steps"] == 0
    assert 0 <= summary["realism_start"] <= 1 and "style_start" not in summary
    assert summary["device"].startswith("cpu (") and summary["processes"] == 1
    assert set(summary["final"]) == set(summary["init"]) >= {"distinct2", "self_bleu4", "d_real_final_discriminator",
                                                              "disc_accuracy_final_discriminator"}
    assert all(0 <= summary[name]["disc_accuracy_final_discriminator"] <= 1 for name in ("final", "init"))


@pytest.mark.parametrize("baseline", ["self-critical", "ema", "none"])
def test_other_baselines_and_style_and_click_rewards(init, scorer_folders, tmp_path, baseline):
    out = tmp_path / "adv"
    result = run_cli("--init", init, "--out", out, "--max-steps", 2, "--baseline", baseline, "--whiten",
                     "--w-style", 0.5, "--style-scorer", scorer_folders / "style",
                     "--w-click", 0.5, "--click-scorer", scorer_folders / "click")
    assert result.exit_code == 0, result.output
    metrics = [r for r in rows(out / "metrics.jsonl") if "policy/loss" in r]
    for name in ("realism", "style", "click"):
        assert all(math.isfinite(r[f"reward/{name}_mean"]) and r[f"reward/{name}_std"] >= 0 for r in metrics)
    assert all(r["reward/advantage_std"] == pytest.approx(1.0, abs=1e-3) for r in metrics)  # whitened
    if baseline == "none":
        assert all(r["reward/baseline_mean"] == 0 for r in metrics)
    if baseline == "ema":  # the first batch has no earlier EMA: baseline 0, then the first batch's mean
        assert metrics[0]["reward/baseline_mean"] == 0 and metrics[1]["reward/baseline_mean"] != 0


def test_content_reward_is_the_cosine_of_sample_and_source_embeddings(tmp_path):
    """A title-from-review run rewarded for staying on its review: the logged content reward of each sample is
    the cosine similarity of its and its review's MiniLM embeddings."""
    init = tmp_path / "init"
    result = CliRunner().invoke(main, ["pretrain", "--generator", "scratch:gpt2-tiny", "--source", "review",
                                       "--field", "title", "--batch-size", "8", "--max-target-tokens", "8",
                                       "--max-steps", "2", "--eval-every", "2", "--eval-batches", "1",
                                       "--test-batches", "1", "--num-samples", "1", "--out", str(init)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "adv"
    result = run_cli("--init", init, "--out", out, "--max-steps", 2, "--w-content", 1, "--log-samples-every", 1)
    assert result.exit_code == 0, result.output
    steps = [r for r in rows(out / "metrics.jsonl") if "policy/loss" in r]
    assert all(-1 <= r["reward/content_mean"] <= 1 and r["reward/content_std"] >= 0 for r in steps)
    logged = rows(out / "samples.jsonl")
    _, cfg, _, _, _ = runs.load(init)
    encoder = metrics.encoder()
    for row in logged:  # the prompt shows the review (cut to the source budget); its row in the train split has it all
        review = next(r["review"] for r in data.load_splits(cfg)["train"]
                      if row["prompt"].startswith(f"review: {str(r['review']).strip()[:40]}"))
        want = float(rewards.content(encoder, [row["text"]], [str(review).strip()])[0])
        assert row["content"] == pytest.approx(want, abs=1e-3)  # logged to 4 decimals
    summary = json.loads((out / "summary.json").read_text())
    assert "content_start" in summary and "content_end" in summary


def test_fixed_style_target(init, scorer_folders, tmp_path):
    out = tmp_path / "adv"
    result = run_cli("--init", init, "--out", out, "--max-steps", 1, "--w-realism", 0, "--w-style", 1,
                     "--style-scorer", scorer_folders / "style", "--style-target", "Dresses")
    assert result.exit_code == 0, result.output
    row = rows(out / "metrics.jsonl")[-1]
    assert "reward/style_mean" in row and "reward/realism_mean" not in row  # only weighted components are scored


def _cli(init, out, *extra):
    return [sys.executable, "-m", "advgen", "adversarial", *TINY, "--init", str(init), "--out", str(out),
            "--max-steps", "6", "--checkpoint-every", "2", "--log-samples-every", "1", "--mle-every", "3",
            "--disc-target-accuracy", "0.9", "--disc-label-smoothing", "0.1", "--rollout-temperature", "0.8", "--mle-coef", "0.1",
            "--dense-rewards", "--ppo-epochs", "2", *extra]


@pytest.mark.parametrize("target", [0.01, 1.0])
def test_a_discriminator_at_its_target_accuracy_stops_stepping(init, tmp_path, target):
    """Target 0.01: reached at once, so the warm-up ends after its first step and the discriminator never steps
    again; target 1: reached only by a batch classified perfectly, so it steps exactly when its measurement is
    below 1, and the warm-up runs all its steps unless its last batch was perfect."""
    out = tmp_path / "adv"
    result = run_cli("--init", init, "--out", out, "--max-steps", 3, "--disc-warmup", 3, "--disc-target-accuracy",
                     target, "--checkpoint-every", 3)
    assert result.exit_code == 0, result.output
    logged = rows(out / "metrics.jsonl")
    if target < 0.5:
        assert logged[0]["disc_warmup/steps"] == 1
    else:
        assert logged[0]["disc_warmup/steps"] == 3 or logged[0]["disc_warmup/accuracy"] == 1
    steps = [r for r in logged if r["step"] >= 1]
    assert [r["disc/stepped"] for r in steps] == [int(r["disc/measured_accuracy"] < target) for r in steps]
    if target < 0.5:
        assert [r["disc/stepped"] for r in steps] == [0, 0, 0]
    assert all(0 <= r["disc/accuracy"] <= 1 and 0 < r["disc/d_fake"] < 1 for r in steps)
    if target < 0.5:  # no step after the warm-up: the last measurement's model is the saved one
        assert {r["disc/accuracy"] for r in steps} <= {i / 16 for i in range(17)}  # 8 real + 8 samples, halves averaged
        assert "disc/loss" not in steps[0]


def test_discriminator_accuracy_is_the_mean_of_the_two_halves_and_smoothing_enters_the_loss():
    from types import SimpleNamespace

    from advgen.adversarial import discriminator_accuracy

    disc = scorers.new_discriminator("scratch:bert-tiny", max_length=16, seed=3)
    real, fake = ["soft cotton tee", "love this dress", "runs small"], ["tee tee tee", "dress the the"]
    measured = discriminator_accuracy(SimpleNamespace(discriminator=disc), real, fake, None)
    p_real, p_fake = rewards.realism(disc, real), rewards.realism(disc, fake)
    expected = ((p_real > 0.5).float().mean() + (p_fake <= 0.5).float().mean()) / 2
    assert measured["disc/accuracy"] == pytest.approx(float(expected))
    assert measured["disc/d_real"] == pytest.approx(float(p_real.mean())) and measured["disc/d_fake"] == pytest.approx(
        float(p_fake.mean()))
    # Label smoothing eps: the loss is (1 - eps) * cross-entropy + eps * the mean over the 2 classes of -log p.
    disc.model.eval()  # dropout off, so the step's forward is the one computed here
    ids = scorers.encode(disc.tokenizer, real + fake, 16)
    logp = disc.model(**scorers.pad(disc.tokenizer, ids, "cpu")).logits.float().log_softmax(-1).detach()
    labels = torch.tensor([1, 1, 1, 0, 0])
    ce, uniform = -logp[torch.arange(5), labels].mean(), -logp.mean(1).mean()
    optimizer = torch.optim.SGD(disc.model.parameters(), lr=0.0)
    disc.model.config.hidden_dropout_prob = disc.model.config.attention_probs_dropout_prob = 0.0
    for module in disc.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    logged = scorers.discriminator_step(disc, optimizer, real, fake, label_smoothing=0.2)
    assert logged["disc/loss"] == pytest.approx(float(0.8 * ce + 0.2 * uniform), rel=1e-5)


def test_resume_after_kill_reaches_the_same_weights_and_logs(init, tmp_path):
    """Kill a run with SIGKILL after a checkpoint, resume it, and compare with an uninterrupted run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # float sums independent of the load
    subprocess.run(_cli(init, tmp_path / "full"), check=True, capture_output=True, env=env)

    proc = subprocess.Popen(_cli(init, tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    metrics, ckpt = tmp_path / "killed" / "metrics.jsonl", tmp_path / "killed" / "checkpoint" / "state.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and metrics.exists() and any(r["step"] >= 3 for r in rows(metrics)):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(r["step"] for r in rows(metrics))
    assert killed_at < 6, "the run finished before it could be killed"

    subprocess.run(_cli(init, tmp_path / "killed", "--resume"), check=True, capture_output=True, env=env)
    full = torch.load(tmp_path / "full" / "checkpoint" / "state.pt", weights_only=False)
    resumed = torch.load(ckpt, weights_only=False)
    assert full["step"] == resumed["step"] == 6
    for part in ("generator", "discriminator"):
        for name, value in full[part].items():
            assert torch.equal(value, resumed[part][name]), (part, name)
    assert full["mixer"] == resumed["mixer"]
    for name in ("metrics.jsonl", "samples.jsonl"):
        assert rows(tmp_path / "full" / name) == rows(tmp_path / "killed" / name), name
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["resumed"] and summary["steps"] == 6


@pytest.mark.parametrize("args, message", [
    ([], "--init is required"),
    (["--init", "{tmp}/nowhere"], "no such run folder"),
    (["--init", "{tmp}/empty"], "is not a run folder"),
    (["--init", "{tmp}/broken"], "cannot load its generator"),
    (["--init", "{init}", "--w-realism", "0"], "all zero"),
    (["--init", "{init}", "--w-style", "1"], "needs --style-scorer"),
    (["--init", "{init}", "--w-click", "1", "--click-scorer", "{tmp}/nowhere"], "is not a scorer folder"),
    (["--init", "{init}", "--w-click", "1", "--click-scorer", "{init}/generator"], "is not a scorer folder"),
    (["--init", "{init}", "--w-style", "1", "--style-scorer", "{scorers}/click"], "not a style scorer"),
    (["--init", "{init}", "--w-style", "1", "--style-scorer", "{scorers}/style", "--style-target", "Hats"],
     "not a label of the style scorer"),
    (["--init", "{init}", "--discriminator", "scratch:bert-huge"], "unknown discriminator spec"),
    (["--init", "{init}", "--k", "1"], "--baseline loo needs --k >= 2"),
    (["--init", "{init}", "--baseline", "greedy"], "--baseline must be one of"),
    (["--init", "{init}", "--gen-lr", "0"], "--gen-lr must be positive"),
    (["--init", "{init}", "--kl-coef", "-1"], "--kl-coef must be finite and not negative"),
    (["--init", "{init}", "--w-content", "1"], "the init run has no --source"),
    (["--init", "{init}", "--w-realism", "0"], "are all zero"),
    (["--init", "{init}", "--disc-target-accuracy", "1.5"], "--disc-target-accuracy must be in [0, 1]"),
    (["--init", "{init}", "--disc-label-smoothing", "1"], "--disc-label-smoothing must be in [0, 1)"),
    (["--init", "{init}", "--rollout-temperature", "0"], "--rollout-temperature must be positive"),
    (["--init", "{init}", "--is-clip", "0"], "--is-clip must be positive"),
    (["--init", "{init}", "--mle-coef", "-1"], "--mle-coef must be finite and not negative"),
    (["--init", "{init}", "--dense-rewards", "--baseline", "self-critical"], "use --baseline none, ema or loo"),
    (["--init", "{init}", "--dense-rewards", "--w-realism", "0", "--w-style", "1", "--style-scorer", "{scorers}/style"],
     "it needs --w-realism > 0"),
    (["--init", "{init}", "--dense-discount", "1.5"], "--dense-discount must be in [0, 1]"),
    (["--init", "{init}", "--ppo-epochs", "0"], "--ppo-epochs must be positive"),
    (["--init", "{init}", "--collapse-distinct-texts", "2"], "--collapse-distinct-texts must be in [0, 1]"),
])
def test_bad_input_exits_2_with_one_line_and_no_run_folder(init, scorer_folders, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    shutil.copytree(init, tmp_path / "broken")
    (tmp_path / "broken" / "generator" / "model.safetensors").write_bytes(b"not weights")
    result = run_cli("--out", tmp_path / "adv", "--max-steps", 1,
                     *[a.format(tmp=tmp_path, init=init, scorers=scorer_folders) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "adv").exists()


def test_existing_run_folder_is_left_alone_and_a_pretrain_run_is_not_resumed(init, tmp_path):
    (tmp_path / "adv").mkdir()
    (tmp_path / "adv" / "notes.txt").write_text("keep me")
    result = run_cli("--init", init, "--out", tmp_path / "adv", "--max-steps", 1)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert (tmp_path / "adv" / "notes.txt").read_text() == "keep me"
    before = sorted(p.name for p in init.iterdir())
    result = run_cli("--out", init, "--resume")
    assert result.exit_code == 2 and "not an adversarial run" in result.stderr
    assert sorted(p.name for p in init.iterdir()) == before


def test_the_collapse_alarm_sees_one_word_outputs_that_distinct2_misses(init, tmp_path, monkeypatch, capsys):
    """Six of eight texts the same one word, two others whose bigrams are all distinct: distinct-2 is 1.0, above
    --collapse-distinct2, and only the share of distinct texts (3/8, below the default 0.5) raises the alarm."""
    texts = ["Disappointed"] * 6 + ["so soft and warm", "runs small in the hips"]
    monkeypatch.setattr(sampling, "decode", lambda tokenizer, samples: texts[:len(samples.tokens)])
    cfg = AdversarialConfig(init=str(init), out=str(tmp_path / "adv"), discriminator="scratch:bert-tiny",
                            disc_max_length=16, prompts_per_step=4, k=2, max_new_tokens=4, max_steps=2,
                            eval_samples=8)
    adversarial(cfg)
    steps = [r for r in rows(tmp_path / "adv" / "metrics.jsonl") if "policy/loss" in r]
    assert [(r["charts/distinct2"], r["charts/distinct_texts"], r["charts/collapse_alarm"]) for r in steps] == [
        (1.0, 3 / 8, 1), (1.0, 3 / 8, 1)]
    assert "distinct-texts of the batch is 0.375" in capsys.readouterr().out
    off = AdversarialConfig(**{**cfg.__dict__, "out": str(tmp_path / "off"), "collapse_distinct_texts": 0.0})
    adversarial(off)
    assert [r["charts/collapse_alarm"] for r in rows(tmp_path / "off" / "metrics.jsonl") if "policy/loss" in r] == [0, 0]


def test_non_finite_rewards_skip_the_update_and_abort_after_patience(init, tmp_path, monkeypatch, capsys):
    """NaN rewards: each step is skipped and logged; the run stops with a clear error after nan_patience.
    Identical texts (distinct-2 = 1/8, below the default 0.2) raise the collapse alarm, which does not abort."""
    monkeypatch.setattr(rewards, "realism", lambda scorer, texts, batch_size=64: torch.full((len(texts),), math.nan))
    monkeypatch.setattr(sampling, "decode", lambda tokenizer, samples: ["nice dress"] * len(samples.tokens))
    cfg = AdversarialConfig(init=str(init), out=str(tmp_path / "adv"), discriminator="scratch:bert-tiny",
                            disc_max_length=16, prompts_per_step=4, k=2, max_new_tokens=4, max_steps=10,
                            nan_patience=2, checkpoint_every=1)
    with pytest.raises(AdvgenError, match="not finite for 2 consecutive steps"):
        adversarial(cfg)
    metrics = [r for r in rows(tmp_path / "adv" / "metrics.jsonl") if "policy/loss" in r]
    assert [(r["step"], r["charts/skipped"], r["charts/collapse_alarm"]) for r in metrics] == [(1, 1, 1), (2, 1, 1)]
    assert "may be collapsing" in capsys.readouterr().out  # a line above the bar, once per alarm streak
    # the skipped updates left the generator as it was
    state = torch.load(tmp_path / "adv" / "checkpoint" / "state.pt", weights_only=False)
    init_weights = load_file(init / "generator" / "model.safetensors")
    assert all(torch.equal(state["generator"][name], value) for name, value in init_weights.items())


def test_mixer_without_update_scales_by_the_current_spread_and_keeps_it():
    mix = rewards.RewardMixer({"realism": 1.0})
    first = torch.tensor([0.2, 0.4, 0.6, 0.8])
    mix({"realism": first})
    state = mix.state_dict()
    greedy = torch.tensor([0.5, 0.9])
    total, _ = mix({"realism": greedy}, update=False)
    assert mix.state_dict() == state  # the greedy decodes do not move the running spread
    assert torch.allclose(total, greedy / first.std(correction=0))
    fresh = rewards.RewardMixer({"realism": 1.0})
    assert torch.allclose(fresh({"realism": greedy}, update=False)[0], greedy / 0.2) and fresh.var == {}


def test_importance_weights_are_the_policy_over_the_colder_distribution_clipped():
    from advgen.adversarial import importance_weights

    model, _ = models.load_generator("scratch:gpt2-tiny", seed=0)
    model.eval()
    prompt = [5, 17, 42]
    samples = sampling.generate(model, [prompt] * 32, 2, temperature=0.7, seed=3)
    with torch.no_grad():
        first = model(torch.tensor([prompt])).logits[0, -1].float()
        second = model(torch.cat([torch.tensor([prompt] * 32), samples.tokens[:, :1]], 1)).logits[:, -1].float()
    y1, y2 = samples.tokens[:, 0], samples.tokens[:, 1]
    log_ratio = (first.log_softmax(-1)[y1] - (first / 0.7).log_softmax(-1)[y1]
                 + second.log_softmax(-1)[torch.arange(32), y2] - (second / 0.7).log_softmax(-1)[torch.arange(32), y2])
    weights = importance_weights(samples, math.inf)
    assert torch.allclose(weights.log(), log_ratio, atol=1e-4)  # float32 log-softmax over 50,257 logits, twice
    clipped = importance_weights(samples, 1.0)
    assert torch.equal(clipped, weights.clamp(max=1.0)) and (clipped <= 1.0).all()


def test_colder_rollouts_log_their_importance_weights(init, tmp_path):
    out = tmp_path / "cold"
    result = run_cli("--init", init, "--out", out, "--max-steps", 2, "--rollout-temperature", 0.7, "--is-clip", 2)
    assert result.exit_code == 0, result.output
    steps = [r for r in rows(out / "metrics.jsonl") if r["step"] >= 1]
    for r in steps:
        assert 0 < r["policy/is_weight_mean"] <= r["policy/is_weight_max"] <= 2
        assert 0 <= r["policy/is_clipped"] <= 1 and 0 < r["policy/is_ess"] <= 1
    assert json.loads((out / "config.json").read_text())["adversarial"]["rollout_temperature"] == 0.7


def test_the_mle_term_adds_its_weighted_nll_to_the_policy_loss(init, tmp_path):
    """Step 1 draws the same samples and rewards with or without the term, so the logged losses differ by exactly
    mle_coef * the term's NLL (float32 sums of a few terms: 1e-5 relative)."""
    logged = {}
    for coef in (0, 0.5):
        out = tmp_path / f"coef{coef}"
        result = run_cli("--init", init, "--out", out, "--max-steps", 1, "--mle-coef", coef)
        assert result.exit_code == 0, result.output
        logged[coef] = rows(out / "metrics.jsonl")[-1]
    assert "losses/mle_term" not in logged[0] and logged[0.5]["losses/mle_term"] > 0
    assert logged[0.5]["policy/loss"] == pytest.approx(logged[0]["policy/loss"] + 0.5 * logged[0.5]["losses/mle_term"],
                                                       rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("baseline", ["loo", "ema"])
def test_dense_rewards_score_every_prefix_and_take_the_baseline_per_position(init, tmp_path, baseline):
    out = tmp_path / "dense"
    result = run_cli("--init", init, "--out", out, "--max-steps", 3, "--dense-rewards", "--dense-discount", 0.5,
                     "--baseline", baseline, "--checkpoint-every", 3, "--log-samples-every", 1)
    assert result.exit_code == 0, result.output
    steps = [r for r in rows(out / "metrics.jsonl") if r["step"] >= 1]
    assert len(steps) == 3
    for r in steps:
        assert METRIC_KEYS <= r.keys() and 0 < r["reward/prefix_realism_mean"] < 1
        assert math.isfinite(r["policy/loss"]) and r["charts/skipped"] == 0 and r["reward/advantage_std"] > 0
    if baseline == "ema":  # the first step has no previous batch: baseline 0; then the per-position averages
        assert steps[0]["reward/baseline_mean"] == 0 and steps[1]["reward/baseline_mean"] != 0
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    assert len(state["ema"]) == 8  # one average per position of the 8 new tokens
    assert json.loads((out / "config.json").read_text())["adversarial"]["dense_rewards"] is True


def test_ppo_epochs_start_with_the_reinforce_step_then_take_clipped_steps_on_the_same_samples(init, tmp_path):
    """The first of the epochs is the REINFORCE step of --ppo-epochs 1 (same samples, rewards and loss, float32
    sums: 1e-6 relative); the later ones log their clipped surrogate and move the weights further."""
    logged, weights = {}, {}
    for epochs in (1, 3):
        out = tmp_path / f"ppo{epochs}"
        result = run_cli("--init", init, "--out", out, "--max-steps", 1, "--ppo-epochs", epochs, "--ppo-clip", 0.1)
        assert result.exit_code == 0, result.output
        logged[epochs] = rows(out / "metrics.jsonl")[-1]
        weights[epochs] = load_file(out / "generator" / "model.safetensors")
    assert "policy/ppo_loss" not in logged[1]
    assert logged[3]["policy/loss"] == pytest.approx(logged[1]["policy/loss"], rel=1e-6, abs=1e-7)
    assert logged[3]["reward/total_mean"] == logged[1]["reward/total_mean"]
    assert math.isfinite(logged[3]["policy/ppo_loss"]) and 0 <= logged[3]["policy/ppo_clipped"] <= 1
    assert logged[3]["policy/ppo_ratio_max"] > 0
    assert any(not torch.equal(weights[1][k], weights[3][k]) for k in weights[1])
