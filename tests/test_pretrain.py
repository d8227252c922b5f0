import json
import os
import math
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
from transformers import AutoModelForCausalLM, AutoTokenizer

from advgen import models, runlog
from advgen.cli import main
from advgen.errors import AdvgenError

TINY = ["--generator", "scratch:gpt2-tiny", "--batch-size", "8", "--eval-batches", "2", "--num-samples", "2",
        "--max-target-tokens", "12", "--lr", "3e-3", "--warmup-steps", "2"]


def pretrain(*args):
    result = CliRunner().invoke(main, ["pretrain", *TINY, *map(str, args)])
    return result


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_pretrain_writes_a_complete_run(tmp_path):
    run = tmp_path / "run"
    result = pretrain("--out", run, "--max-steps", 6, "--eval-every", 3)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint", "config.json", "generator", "metrics.jsonl", "samples.jsonl", "summary.json", "tb"]
    stored = json.loads((run / "config.json").read_text())
    assert stored["stage"] == "pretrain" and set(stored) == {"stage", "pretrain"}
    config = stored["pretrain"]
    assert config["generator"] == "scratch:gpt2-tiny" and config["field"] == "title" and config["seed"] == 0
    metrics = rows(run / "metrics.jsonl")
    assert [r["step"] for r in metrics if "losses/train" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in metrics if "val/loss" in r] == [3, 6]
    assert metrics[0]["data/train_target_tokens"] > 50_000
    samples = rows(run / "samples.jsonl")
    assert [s["step"] for s in samples] == [3, 3, 6, 6] and all(s["prompt"] == "title:" for s in samples)
    summary = json.loads((run / "summary.json").read_text())
    assert math.isfinite(summary["test_ppl"]) and summary["test_unigram_ppl"] > 1
    assert summary["device"].startswith("cpu (") and summary["device"].endswith(" threads)") and summary["processes"] == 1
    model = AutoModelForCausalLM.from_pretrained(run / "generator")
    tok = AutoTokenizer.from_pretrained(run / "generator")
    assert model.config.n_layer == 2 and len(tok) == 50257


def test_training_lowers_validation_loss(tmp_path):
    result = pretrain("--out", tmp_path / "run", "--max-steps", 30, "--eval-every", 10, "--lr", 1e-2)
    assert result.exit_code == 0, result.output
    val = [r["val/loss"] for r in rows(tmp_path / "run" / "metrics.jsonl") if "val/loss" in r]
    assert val[0] < math.log(50257) - 2  # far below a uniform guess over the vocabulary
    assert val[-1] < val[0]


def test_conditioned_review_and_source_tasks(tmp_path):
    result = pretrain("--out", tmp_path / "rev", "--field", "review", "--condition", "department,rating",
                      "--max-steps", 2, "--eval-every", 2)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "rev" / "config.json").read_text())["pretrain"]["condition"] == ["department", "rating"]
    prompt = rows(tmp_path / "rev" / "samples.jsonl")[0]["prompt"]
    assert prompt.startswith("department: ") and "\nrating: " in prompt and prompt.endswith("\nreview:")

    result = pretrain("--out", tmp_path / "src", "--source", "review", "--field", "class",
                      "--max-steps", 2, "--eval-every", 2)
    assert result.exit_code == 0, result.output
    prompt = rows(tmp_path / "src" / "samples.jsonl")[0]["prompt"]
    assert prompt.startswith("review: ") and prompt.endswith("\nclass:")


def test_user_txt_corpus(tmp_path):
    corpus = tmp_path / "captions.txt"
    corpus.write_text("".join(f"a man riding a {w} down street {i} .\n" for i in range(100) for w in ["bike", "horse"]))
    result = pretrain("--out", tmp_path / "run", "--corpus", corpus, "--max-steps", 2, "--eval-every", 2)
    assert result.exit_code == 0, result.output


def test_freeze_layers_keeps_embeddings_and_first_blocks(tmp_path):
    result = pretrain("--out", tmp_path / "run", "--max-steps", 3, "--eval-every", 3, "--freeze-layers", 1)
    assert result.exit_code == 0, result.output
    init, _ = models.load_generator("scratch:gpt2-tiny", dropout=0.1, seed=0)
    init = init.state_dict()
    trained = load_file(tmp_path / "run" / "generator" / "model.safetensors")
    for name, value in trained.items():
        frozen = name.startswith(("transformer.wte", "transformer.wpe", "transformer.h.0."))
        assert torch.equal(value, init[name]) == frozen, name


def test_lora_run_saves_merged_weights(tmp_path):
    result = pretrain("--out", tmp_path / "run", "--max-steps", 3, "--eval-every", 3, "--lora-r", 4)
    assert result.exit_code == 0, result.output
    trained = load_file(tmp_path / "run" / "generator" / "model.safetensors")
    assert not any("lora" in name for name in trained)
    init, _ = models.load_generator("scratch:gpt2-tiny", dropout=0.1, seed=0)
    init = init.state_dict()
    assert torch.equal(trained["transformer.wte.weight"], init["transformer.wte.weight"])
    assert not torch.equal(trained["transformer.h.1.attn.c_attn.weight"], init["transformer.h.1.attn.c_attn.weight"])
    AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "generator")


def _cli(out, *extra):
    return [sys.executable, "-m", "advgen", "pretrain", *TINY, "--out", str(out), "--max-steps", "12",
            "--eval-every", "2", *extra]


@pytest.mark.parametrize("tokenizer", ["gpt2", "corpus:400"])
def test_resume_after_kill_reaches_the_same_weights(tmp_path, tokenizer):
    """Kill a run with SIGKILL after a checkpoint, resume it, and compare with an uninterrupted run. A corpus
    tokenizer is learned once and read back on resume."""
    # One thread per process: the runs' float sums then never depend on how many threads a busy
    # machine hands out, only on the seed and the checkpoint.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(_cli(tmp_path / "full", "--tokenizer", tokenizer), check=True, capture_output=True, env=env)

    proc = subprocess.Popen(_cli(tmp_path / "killed", "--tokenizer", tokenizer), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and any(r.get("val/loss") and r["step"] >= 4 for r in rows(metrics)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(r["step"] for r in rows(metrics))
    assert killed_at < 12, "the run finished before it could be killed"

    subprocess.run(_cli(tmp_path / "killed", "--resume"), check=True, capture_output=True, env=env)
    full = torch.load(tmp_path / "full" / "checkpoint" / "state.pt", weights_only=False)
    resumed = torch.load(tmp_path / "killed" / "checkpoint" / "state.pt", weights_only=False)
    assert full["step"] == resumed["step"] == 12
    for name, value in full["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    def logged(run):  # every logged value but the clock's (val/seconds)
        return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows(tmp_path / run / "metrics.jsonl")]
    assert logged("full") == logged("killed")


@pytest.mark.parametrize("setup, args, message", [
    (None, ["--corpus", "{tmp}/missing.txt"], "corpus not found"),
    (b"", ["--corpus", "{tmp}/c.txt"], "is empty"),
    (b"\xff\xfe dress\n", ["--corpus", "{tmp}/c.txt"], "not UTF-8"),
    (None, ["--field", "headline"], "no field column 'headline'"),
    (None, ["--field", "review", "--condition", "colour"], "no condition column 'colour'"),
    (None, ["--generator", "scratch:gpt9"], "unknown generator spec"),
    (None, ["--generator", "gpt2"], "hub is offline"),
    (None, ["--tokenizer", "corpus:lots"], "--tokenizer must be 'gpt2' or 'corpus:N'"),
    (None, ["--tokenizer", "corpus:100"], "N > 256"),
    (None, ["--tokenizer", "corpus:500", "--generator", "smollm2-135m"], "needs a from-scratch generator"),
    (None, ["--batch-size", "0"], "--batch-size must be positive"),
    (None, ["--batch-size", "-4"], "--batch-size must be positive"),
    (None, ["--lr", "0"], "--lr must be positive"),
    (None, ["--lr", "-1e-3"], "--lr must be positive"),
    (None, ["--epochs", "-1"], "--epochs must be finite and not negative"),
    (None, ["--precision", "fp16"], "--precision must be one of auto, fp32, bf16"),
    (None, ["--test-corpus", "{tmp}/missing.txt"], "corpus not found"),
])
def test_bad_input_exits_2_with_one_line_and_no_run_folder(tmp_path, setup, args, message):
    if setup is not None:
        (tmp_path / "c.txt").write_bytes(setup)
    result = pretrain("--out", tmp_path / "run", "--max-steps", 2, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_existing_run_folder_is_left_alone(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("keep me")
    result = pretrain("--out", tmp_path / "run", "--max-steps", 2)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert (tmp_path / "run" / "notes.txt").read_text() == "keep me"


def test_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    ckpt = tmp_path / "state.pt"
    runlog.save_state(ckpt, {"weights": torch.ones(1000)})
    before = ckpt.read_bytes()
    monkeypatch.setattr(runlog.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(2**40, 2**40, 2**10))
    with pytest.raises(AdvgenError, match="it needs 0 MB, 0 MB are free"):
        runlog.save_state(ckpt, {"weights": torch.zeros(1000)})
    assert ckpt.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["state.pt"]

    result = pretrain("--out", tmp_path / "run", "--max-steps", 2, "--eval-every", 2)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and "not enough disk space to write" in errors[0], result.stderr  # after the progress bar
    assert not (tmp_path / "run" / "checkpoint" / "state.pt").exists()


def test_packaged_smollm2_fine_tunes_offline(tmp_path):
    result = CliRunner().invoke(main, ["pretrain", "--generator", "smollm2-135m", "--max-steps", "5",
                                       "--batch-size", "2", "--eval-every", "5", "--eval-batches", "1",
                                       "--test-batches", "1", "--num-samples", "1", "--max-target-tokens", "12",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "generator")
    assert model.config.model_type == "llama" and model.config.vocab_size == 49152
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    losses = [r["losses/train"] for r in rows(tmp_path / "run" / "metrics.jsonl") if "losses/train" in r]
    assert len(losses) == 5 and all(math.isfinite(x) for x in losses)


def test_early_stopping_keeps_the_best_checkpoint(tmp_path):
    # A learning rate this large makes the loss climb after the first evaluation.
    result = pretrain("--out", tmp_path / "run", "--max-steps", 40, "--eval-every", 2, "--patience", 2,
                      "--lr", 3.0, "--warmup-steps", 0)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    val = [(r["step"], r["val/loss"]) for r in rows(tmp_path / "run" / "metrics.jsonl") if "val/loss" in r]
    assert summary["early_stopped"] and summary["steps"] < 40
    best_step, best_loss = min(val, key=lambda x: x[1])
    assert summary["best_step"] == best_step
    assert summary["valid_ppl"] == pytest.approx(math.exp(best_loss))
    assert [s for s, _ in val][-1] - best_step == 2 * 2  # stopped after `patience` worse evaluations


def test_corpus_tokenizer_run_is_an_hf_folder_that_loads_and_generates(tmp_path):
    run = tmp_path / "run"
    result = pretrain("--out", run, "--max-steps", 2, "--eval-every", 2, "--tokenizer", "corpus:400")
    assert result.exit_code == 0, result.output
    tokenizer = AutoTokenizer.from_pretrained(str(run / "generator"))
    model = AutoModelForCausalLM.from_pretrained(str(run / "generator"))
    assert 256 < len(tokenizer) <= 400 and model.config.vocab_size == len(tokenizer)
    assert AutoTokenizer.from_pretrained(str(run / "tokenizer")).get_vocab() == tokenizer.get_vocab()
    text = " Love this dress!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: every text round-trips
    prompt = tokenizer("title:", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    summary = json.loads((run / "summary.json").read_text())
    assert math.isfinite(summary["test_ppl"]) and summary["test_unigram_ppl"] < 400
    assert summary["test_nll_per_word"] >= math.log(summary["test_ppl"]) - 1e-9  # a word is a token or more
    assert 0 <= summary["word_validity"] <= 1 and summary["validity_samples"] == 2
    assert 0.5 < summary["test_word_validity"] < 1  # unseen titles hold words the train split lacks


def test_epochs_set_the_step_budget_and_the_whole_validation_split_is_scored(tmp_path):
    """--epochs 0.5 on the train split's batches of 8 with 2 micro-batches per step: ceil(0.5 * per_epoch / 2)
    optimizer steps, stored in config.json; --eval-batches 0 scores every validation example."""
    run = tmp_path / "run"
    result = pretrain("--out", run, "--epochs", 0.5, "--grad-accum", 2, "--eval-every", 1000, "--eval-batches", 0,
                      "--tokenizer", "corpus:400")
    assert result.exit_code == 0, result.output
    train_examples = rows(run / "metrics.jsonl")[0]["data/train_examples"]
    steps = math.ceil(0.5 * (train_examples // 8) / 2)
    stored = json.loads((run / "config.json").read_text())["pretrain"]
    assert stored["epochs"] == 0.5 and stored["max_steps"] == steps
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == steps and summary["epochs"] == pytest.approx(steps * 2 / (train_examples // 8), abs=1e-3)
    val = [r for r in rows(run / "metrics.jsonl") if "val/loss" in r]
    assert [r["step"] for r in val] == [steps]  # the last step always validates

    # The length-sorted batches of 4x the training batch give the whole split's mean NLL, as one pass in the
    # corpus order does (float32 sums in another order: a relative difference of a few 1e-7).
    from advgen import data
    from advgen.config import PretrainConfig
    from advgen.metrics import mean_nll
    cfg = PretrainConfig(**{**stored, "out": str(run)})
    model = AutoModelForCausalLM.from_pretrained(str(run / "generator"))
    tokenizer = AutoTokenizer.from_pretrained(str(run / "generator"))
    valid = data.encode(tokenizer, data.load_splits(cfg)["valid"], cfg)
    assert val[0]["val/loss"] == pytest.approx(mean_nll(model, valid, 8, tokenizer.pad_token_id, "cpu"), rel=1e-5)


def test_bf16_autocast_trains_and_fp32_is_untouched(tmp_path):
    """--precision bf16 runs the forward passes under bf16 autocast (CPU autocast here; CUDA in real use), weights
    and optimizer state stay fp32; 'auto' on CPU is plain fp32."""
    model, _ = models.load_generator("scratch:gpt2-tiny", seed=0)
    ids = torch.tensor([[1, 2, 3]])
    cpu = torch.device("cpu")
    with models.autocast(cpu, "auto"):
        assert model(ids).logits.dtype == torch.float32
    with models.autocast(cpu, "bf16"):
        assert model(ids).logits.dtype == torch.bfloat16
    run = tmp_path / "run"
    result = pretrain("--out", run, "--max-steps", 4, "--eval-every", 2, "--precision", "bf16")
    assert result.exit_code == 0, result.output
    losses = [r["losses/train"] for r in rows(run / "metrics.jsonl") if "losses/train" in r]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=False)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())


def test_coco_preset_trains_on_the_benchmark_files(tmp_path, monkeypatch):
    """The coco preset's paths are relative to the repository root; its test split is coco_test.txt, whole."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    run = tmp_path / "coco"
    result = CliRunner().invoke(main, ["pretrain", "--preset", "coco", "--out", str(run), "--generator",
                                       "scratch:gpt2-tiny", "--tokenizer", "corpus:400", "--epochs", 0.02,
                                       "--test-batches", 1, "--num-samples", 2])
    assert result.exit_code == 0, result.output
    first = rows(run / "metrics.jsonl")[0]
    test_lines = (root / "experiments" / "data" / "coco" / "coco_test.txt").read_text().splitlines()
    assert first["data/test_examples"] == len(test_lines) == 10000  # the last line has no newline
    assert first["data/train_examples"] + first["data/valid_examples"] == 10000  # coco_train.txt, 90/10
    assert 0.85 < first["data/train_examples"] / 10000 < 0.95
