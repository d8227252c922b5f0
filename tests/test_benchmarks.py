"""The benchmarks run at tiny sizes and report what they claim to (their figures come from real runs: docs/)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pretrain_benchmark_compares_the_same_losses_and_prints_ratios():
    out = subprocess.run([sys.executable, "benchmarks/pretrain.py", "--size", "tiny", "--vocab", "300",
                          "--batch-size", "4", "--steps", "1", "--repeats", "1", "--warmup", "1"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    rows = result["rows"]
    assert set(rows) == {"plain / gpt2", "advgen / gpt2", "plain / corpus:300", "advgen / corpus:300"}
    for vocab in ("gpt2", "corpus:300"):  # same weights, batch and dropout masks: the same mean NLL
        assert rows[f"advgen / {vocab}"]["first_loss"] == pytest.approx(rows[f"plain / {vocab}"]["first_loss"], rel=1e-5)
    assert rows["plain / gpt2"]["vocab_size"] == 50257 and rows["plain / corpus:300"]["vocab_size"] <= 300
    assert rows["plain / gpt2"]["params"] > rows["plain / corpus:300"]["params"]
    assert all(v > 0 for v in result["speedups"].values()) and len(result["speedups"]) == 5
    assert "speed-up advgen corpus:300 over plain gpt2" in out


def test_vs_trl_times_every_row_on_the_same_prompts_and_prints_ratios():
    out = subprocess.run([sys.executable, "benchmarks/vs_trl.py", "--policies", "tiny", "--prompts", "2", "--k", "2",
                          "--new-tokens", "4", "--steps", "1", "--warmup", "1", "--init-steps", "2"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout  # exits 1 on other prompts
    result = json.loads(out.strip().splitlines()[-1])
    tiny = result["policies"]["tiny"]
    assert set(tiny["rows"]) == {"trl-rloo", "advgen", "advgen+disc"}
    for name, row in tiny["rows"].items():
        assert row["samples_per_s"] > 0 and 1 <= row["tokens_per_sample"] <= 4 and row["peak_step_memory_mb"] >= 0
        assert {"sample", "score", "policy forward (grad)", "forward (no grad)", "optimizer"} <= set(row["stages_s"])
        assert row["stages_s"]["backward and rest"] >= 0  # the timed stages are disjoint parts of the step
        alone = row["memory_alone"]  # the row again in a process of its own
        assert alone["peak_step_memory_mb"] >= 0 and alone["process_peak_mb"] > 100  # torch and the models are in it
    assert tiny["rows"]["advgen+disc"]["stages_s"]["discriminator step"] > 0
    assert {k for k in tiny if k.startswith(("speedup/", "step_memory_ratio/"))} == \
        {f"{kind}/{row}" for kind in ("speedup", "step_memory_ratio") for row in ("advgen", "advgen+disc")}
    assert "speedup/advgen" in out
