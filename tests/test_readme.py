"""Every command in the README's ```bash blocks runs as written, in the README's order, from a copy of the
repository root, at tiny size: the same command line with flags appended that shrink the models, the
corpus and the step counts (for `make demo`, the Makefile's own demo recipe). `make paper` runs on the committed
logs, writing into the copy; `make experiments` is tests/test_experiments.py's smoke chain. Installing (make
install, pip) is what CI itself does before this suite, and `make test` is this suite."""
import gzip
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from advgen import data
from advgen.cli import main

ROOT = Path(__file__).resolve().parents[1]
INSTALLING = {"make install", "make test", "pip install"}  # run by CI (.ci/run) before the suite, not here
SMOKED = {"make experiments"}  # hours of training: tests/test_experiments.py runs its chain at tiny size (--smoke)

TINY = {  # appended to each command: click keeps the last value of an option given twice
    "pretrain": ["--generator", "scratch:gpt2-tiny", "--discriminator", "scratch:bert-tiny", "--corpus", "tiny.jsonl",
                 "--max-steps", "2", "--eval-every", "2", "--eval-batches", "1", "--test-batches", "1",
                 "--num-samples", "2", "--batch-size", "4", "--max-target-tokens", "8", "--device", "cpu"],
    "adversarial": ["--discriminator", "scratch:bert-tiny", "--max-steps", "2", "--disc-warmup", "1",
                    "--prompts-per-step", "2", "--k", "2", "--eval-samples", "4", "--checkpoint-every", "1",
                    "--device", "cpu"],
    "train-scorer": ["--model", "scratch:bert-tiny", "--corpus", "tiny.jsonl", "--max-steps", "2", "--eval-every", "2",
                     "--max-length", "16", "--batch-size", "4", "--device", "cpu"],
    "sample": ["--n", "4", "--device", "cpu"],  # "--n" is dropped where the command samples for --inputs
    "score": ["--device", "cpu"],
    "evaluate": ["--n", "16"],
    "sweep": ["--n", "4", "--temperatures", "0.8,1.0"],
}


def readme_commands() -> list:
    """The lines of the README's ```bash blocks, without comments."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = [line.split("  #")[0].split(" # ")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def demo_recipe() -> list:
    """The advgen commands of the Makefile's demo target."""
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), flags=re.M).group(1)
    return [line.strip().replace("$(BIN)/", "") for line in recipe.splitlines() if "$(BIN)/advgen" in line]


def tiny_corpus(path: Path) -> None:
    """300 rows of the embedded corpus, every column kept, so every task of the README has its fields."""
    with gzip.open(data.DEFAULT_CORPUS, "rt") as f:
        rows = [json.loads(line) for line in itertools.islice(f, 300)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(command: str) -> None:
    argv = shlex.split(command)
    if argv[0] == "torchrun":  # a real launcher: two gloo processes on the CPU
        assert argv[argv.index("-m") + 1] == "advgen", command
        at = argv.index("-m")
        launcher = [sys.executable, "-m", "torch.distributed.run", *argv[1:at]]
        args = argv[at + 2:]
        result = subprocess.run([*launcher, "-m", "advgen", *args, *TINY[args[0]]], capture_output=True, text=True,
                                timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        return
    if command == "make paper":  # the real thing on the committed logs, written into the copy, not into paper/
        subprocess.run([sys.executable, str(ROOT / "experiments" / "paper.py"), "--runs", str(ROOT / "paper" / "runs"),
                        "--out", "paper"], check=True, timeout=600)
        return
    assert argv[0] == "advgen", f"the README shows a command this test does not know how to run: {command}"
    tiny = TINY[argv[1]]
    if "--inputs" in argv:  # one block of texts per input row: the file sets the count
        at = tiny.index("--n")
        tiny = tiny[:at] + tiny[at + 2:]
    if "--preset" in argv and argv[argv.index("--preset") + 1] == "coco":  # the benchmark's own files, a tiny model
        if "--corpus" in tiny:  # pretrain: the preset's own corpus, a tokenizer small enough for it
            at = tiny.index("--corpus")
            tiny = tiny[:at] + tiny[at + 2:] + ["--tokenizer", "corpus:300"]
    result = CliRunner().invoke(main, argv[1:] + tiny)
    assert result.exit_code == 0, f"{command}\n{result.output[-3000:]}"


def test_every_readme_command_runs_as_written(tmp_path, monkeypatch):
    commands = readme_commands()
    assert "make demo" in commands and any(c.startswith("advgen adversarial") for c in commands)
    monkeypatch.chdir(tmp_path)  # the repository root, as far as the commands can tell: they write runs/ only
    tiny_corpus(tmp_path / "tiny.jsonl")
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")  # the benchmark files the coco preset reads
    (tmp_path / "docs").symlink_to(ROOT / "docs")  # the example files the README's commands read
    for command in commands:
        if any(command.startswith(prefix) for prefix in INSTALLING) or command in SMOKED:
            continue
        for line in demo_recipe() if command == "make demo" else [command]:
            run(line)
        for path in re.findall(r"(?:^|\s)(\.\./\S+|/\S+)", command):
            raise AssertionError(f"{command} names a path outside the repository: {path}")
    assert (tmp_path / "runs" / "quick-adversarial" / "summary.json").is_file()
    assert (tmp_path / "runs" / "sweep" / "sweep.csv").is_file()
    assert (tmp_path / "paper" / "tables" / "table1.md").is_file() and (tmp_path / "paper" / "figures" / "figure1.png").is_file()
