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
