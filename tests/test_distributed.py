"""Data-parallel training under torchrun: 2 gloo processes on CPU against 1 process with the same global
batch and seed. Dropout is off, because each rank draws its own masks; what remains are fp32 rounding
differences of splitting the batch (measured 1.2e-5 on the weights after 6 pretrain steps at lr 3e-3, and
4.8e-6 after 3 adversarial steps at lr 1e-3 from a generator with a 300-token vocabulary).

AdamW is invariant to the scale of the gradient, so the weights alone would not catch a wrong factor
between the ranks' losses and the global mean; the logged losses and gradient norms do."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

# Max abs difference of any weight, fp32. Not derivable from rounding alone: AdamW divides by sqrt(v), so a
# gradient coordinate near zero whose sign differs by rounding moves a full step (lr); 1e-4 is a bound measured
# with an 8-10x margin on these settings (see above), and the logged losses below carry the derived bounds.
WEIGHT_TOLERANCE = 1e-4
PRETRAIN = ["pretrain", "--generator", "scratch:gpt2-tiny", "--batch-size", "8", "--eval-batches", "2",
            "--num-samples", "2", "--max-target-tokens", "12", "--lr", "3e-3", "--warmup-steps", "2",
            "--max-steps", "6", "--eval-every", "3", "--dropout", "0", "--test-batches", "2", "--device", "cpu"]
ADVERSARIAL = ["adversarial", "--discriminator", "scratch:bert-tiny", "--disc-max-length", "16", "--disc-dropout", "0",
               "--prompts-per-step", "4", "--k", "2", "--max-steps", "3", "--checkpoint-every", "2",
               "--log-samples-every", "1", "--mle-every", "2", "--disc-warmup", "2", "--eval-samples", "8",
               "--gen-lr", "1e-3", "--disc-lr", "1e-3", "--device", "cpu",
               # The discriminator measured on each step's batch before it steps (gathered over the ranks); a
               # target of 1 is not reached by these tiny models, so it steps every time, as without one.
               "--disc-target-accuracy", "1", "--disc-label-smoothing", "0.1",
               # Colder rollouts: each rank weights its samples by their importance weights.
               "--rollout-temperature", "0.8",
               # A maximum-likelihood term in every step, its batch split over the ranks.
               "--mle-coef", "0.1",
               # Dense rewards: each rank scores the prefixes of its samples; the returns are gathered.
               "--dense-rewards",
               # Two PPO epochs: the second recomputes each rank's log-probs and clips their ratios.
               "--ppo-epochs", "2",
               # Plain REINFORCE: leave-one-out advantages are differences of nearly equal rewards, which the
               # rounding of batch-split forwards changes by ~1e-4 relative, and AdamW turns that noise on
               # cancelling gradients into sign flips of a full step (measured 4.6e-3 on the weights).
               "--baseline", "none"]
SCORER = ["train-scorer", "--model", "scratch:bert-tiny", "--batch-size", "16", "--max-length", "24",
          "--eval-every", "3", "--eval-batches", "2", "--lr", "1e-3", "--warmup-steps", "1", "--max-steps", "6",
          "--dropout", "0", "--kind", "style", "--label", "sentiment", "--device", "cpu"]


def advgen(args: list, out: Path, processes: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    return subprocess.run([*launcher, "-m", "advgen", *args, "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def max_weight_difference(a: Path, b: Path) -> float:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert x.keys() == y.keys()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def rows(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pretrain_on_two_processes_equals_one(tmp_path):
    one, two = advgen(PRETRAIN, tmp_path / "one"), advgen(PRETRAIN, tmp_path / "two", processes=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("run folder:") == 1  # rank 0 alone reports
    assert max_weight_difference(tmp_path / "one" / "generator", tmp_path / "two" / "generator") <= WEIGHT_TOLERANCE
    # Rank 0 alone logs, and it logs the global batch's loss.
    m1, m2 = rows(tmp_path / "one" / "metrics.jsonl"), rows(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in m1] == [r["step"] for r in m2]
    for a, b in zip(m1, m2):
        for key in ("losses/train", "val/loss", "charts/tokens_seen", "charts/grad_norm"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5), (key, a, b)
    assert (tmp_path / "two" / "checkpoint" / "state.pt").exists()

    # Resuming with another world size is refused, and the run folder stays as it was.
    before = {p: p.read_bytes() for p in (tmp_path / "two").rglob("*") if p.is_file()}
    again = advgen([*PRETRAIN, "--resume"], tmp_path / "two", processes=1)
    assert again.returncode == 2 and again.stderr.count("advgen: error:") == 1
    assert "world size 2" in again.stderr and again.stderr.strip().count("\n") == 0, again.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "two").rglob("*") if p.is_file()} == before


def test_adversarial_on_two_processes_equals_one(tmp_path):
    # The samples of steps 2 and 3 come from weights that already differ by rounding, and an inverse-CDF draw
    # flips to the next token when the uniform falls between the two runs' CDF values: a chance of about
    # |dCDF| / p per draw. A 2-step model is near uniform over its vocabulary, so p ~ 1/V: over GPT-2's 50,257
    # tokens (p ~ 2e-5) one of step 3's 96 draws flipped (seen: one sample differed from its 9th token on); over
    # a 300-token vocabulary (p ~ 3e-3, |dCDF| ~ 1e-8 median, 2.4e-7 max, measured) it is ~1e-5 per draw.
    init = tmp_path / "init"
    assert advgen([*PRETRAIN, "--condition", "department", "--max-steps", "2", "--tokenizer", "corpus:300"],
                  init).returncode == 0
    one = advgen([*ADVERSARIAL, "--init", str(init)], tmp_path / "one")
    two = advgen([*ADVERSARIAL, "--init", str(init)], tmp_path / "two", processes=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    for model in ("generator", "discriminator"):
        assert max_weight_difference(tmp_path / "one" / model, tmp_path / "two" / model) <= WEIGHT_TOLERANCE
    assert max_weight_difference(init / "generator", tmp_path / "one" / "generator") > 1e-3  # it did move
    m1, m2 = rows(tmp_path / "one" / "metrics.jsonl"), rows(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in m1] == [r["step"] for r in m2]
    for a, b in zip(m1, m2):
        assert a.keys() == b.keys()
        for key in ("reward/realism_mean", "reward/total_mean", "policy/loss", "policy/grad_norm",
                    "policy/sample_tokens", "disc/loss", "disc/accuracy", "disc/grad_norm", "losses/mle",
                    "charts/distinct2", "disc_warmup/loss", "disc/stepped", "policy/is_weight_mean",
                    "policy/is_ess", "losses/mle_term"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (key, a, b)
        # The KL is a difference of two 12-term float32 sums near -130 (spacing 1.5e-5): each addition rounds by
        # up to 7.6e-6, so the two sums alone may differ by 1.7e-4; 3e-4 is 20 ulp at 130.
        if "policy/kl" in a:
            assert b["policy/kl"] == pytest.approx(a["policy/kl"], abs=3e-4)
    s1, s2 = rows(tmp_path / "one" / "samples.jsonl"), rows(tmp_path / "two" / "samples.jsonl")
    assert [r["text"] for r in s1] == [r["text"] for r in s2]  # the same samples, drawn on two ranks

    # Resuming with the same world size continues exactly: 2 steps, then resumed to 3, equals 3 steps.
    part = tmp_path / "part"
    assert advgen([*ADVERSARIAL, "--init", str(init), "--max-steps", "2"], part, processes=2).returncode == 0
    stored = json.loads((part / "config.json").read_text())
    stored["adversarial"]["max_steps"] = 3
    (part / "config.json").write_text(json.dumps(stored))
    resumed = advgen([*ADVERSARIAL, "--init", str(init), "--resume"], part, processes=2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert max_weight_difference(part / "generator", tmp_path / "two" / "generator") == 0
    assert rows(part / "metrics.jsonl") == m2

    odd = advgen([*ADVERSARIAL, "--init", str(init), "--prompts-per-step", "3"], tmp_path / "odd", processes=2)
    assert odd.stderr.count("advgen: error:") == 1 and "--prompts-per-step 3 does not divide" in odd.stderr
    assert not (tmp_path / "odd").exists()


def test_train_scorer_on_two_processes_equals_one(tmp_path):
    one, two = advgen(SCORER, tmp_path / "one"), advgen(SCORER, tmp_path / "two", processes=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert max_weight_difference(tmp_path / "one", tmp_path / "two") <= WEIGHT_TOLERANCE
    s1, s2 = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two"))
    assert s2["test_loss"] == pytest.approx(s1["test_loss"], rel=1e-4)


def test_a_batch_the_world_size_does_not_divide_exits_2(tmp_path):
    result = advgen([*PRETRAIN[:PRETRAIN.index("--batch-size") + 1], "7", *PRETRAIN[PRETRAIN.index("--batch-size") + 2:]],
                    tmp_path / "run", processes=2)
    # Each rank exits with status 2 and rank 0 prints the one line; torchrun then reports the first failed
    # rank (the root cause, exit code 2), stops the others, and exits with its own status 1.
    assert result.returncode != 0
    assert result.stderr.count("advgen: error:") == 1
    assert "--batch-size 7 does not divide over the world size 2" in result.stderr
    assert "exitcode  : 2" in result.stderr.split("Root Cause")[1]
    assert not (tmp_path / "run").exists()


def test_non_finite_scores_on_two_processes_skip_the_step_and_stop_with_one_line(tmp_path):
    """A scorer that returns NaN: each rank's mixed reward must be the global batch's (NaN) so that the step is
    skipped on every rank, and the run ends after --nan-patience with the one-line error (not a shape crash)."""
    import torch

    from advgen import scorers

    init = tmp_path / "init"
    assert advgen([*PRETRAIN, "--max-steps", "2"], init).returncode == 0
    broken = scorers.new_discriminator("scratch:bert-tiny", 16, seed=0)
    with torch.no_grad():
        for p in broken.model.classifier.parameters():
            p.fill_(float("nan"))
    scorers.save_scorer(broken._replace(info={**broken.info, "kind": "click", "labels": scorers.ENGAGED}),
                        tmp_path / "click")
    # Realism off (dense rewards are realism per token, so they go off too): the click scorer alone is scored.
    result = advgen([*ADVERSARIAL, "--no-dense-rewards", "--init", str(init), "--disc-warmup", "0", "--w-realism", "0", "--w-click", "1",
                     "--click-scorer", str(tmp_path / "click"), "--nan-patience", "2"], tmp_path / "adv", processes=2)
    # As above: the root cause is a rank's exit status 2 (torchrun stops the other and exits with 1), with one line
    # from rank 0 and no traceback through advgen's code.
    assert result.returncode != 0 and 'advgen/adversarial.py"' not in result.stderr, result.stderr[-3000:]
    assert "exitcode  : 2" in result.stderr.split("Root Cause")[1], result.stderr[-3000:]
    assert result.stderr.count("advgen: error:") == 1 and "not finite for 2 consecutive steps" in result.stderr
    steps = [r for r in rows(tmp_path / "adv" / "metrics.jsonl") if "policy/loss" in r]
    assert [(r["step"], r["charts/skipped"]) for r in steps] == [(1, 1), (2, 1)]
