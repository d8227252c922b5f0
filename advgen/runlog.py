"""Run folder I/O: atomic writes, metrics.jsonl (+ TensorBoard where installed), progress bar."""
import json
import os
import random
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from advgen.errors import AdvgenError


@contextmanager
def atomic(path, suffix: str = ""):
    """Yield a temporary path beside `path`; it replaces `path` when the block succeeds and is deleted
    when it fails, so a crash or bad input never leaves a half-written file or loses the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_state(path, state: dict) -> None:
    """torch.save `state` plus the RNG states (torch, python, CUDA) atomically: a resumed run draws the same."""
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    # torch.save on a full disk fails with an opaque "unexpected pos" error: say so plainly, before writing
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    needed, free = _storage_bytes(state), shutil.disk_usage(Path(path).parent).free
    if needed > free:
        raise AdvgenError(f"not enough disk space to write {path}: it needs {needed / 2**20:.0f} MB, "
                          f"{free / 2**20:.0f} MB are free")
    with atomic(path) as tmp:
        torch.save({**state, "rng": rng}, tmp)


def _storage_bytes(obj) -> int:
    """Bytes of the distinct tensor storages in a nested dict/list: about what torch.save writes."""
    storages = {}
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            storages[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
    return sum(storages.values())


def load_state(path) -> dict:
    """The dict `save_state` wrote, with the RNG states restored (and removed from it)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    rng = state.pop("rng")
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def progress(total: int, desc: str, **kwargs):
    """A tqdm bar that redraws at most every 30 s when stderr is not a terminal (short CI logs)."""
    return tqdm(total=total, desc=desc, dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30, **kwargs)


def write_json(path: Path, obj) -> None:
    """Write JSON atomically: a crash never leaves a half-written file."""
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop rows logged after `max_step`: a resumed run replays those steps."""
    if not Path(path).exists():
        return
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= max_step]
    with atomic(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))


class RunLog:
    """Scalars go to metrics.jsonl (one JSON object per step) and TensorBoard; a tqdm bar shows progress.
    enabled=False (every rank but the first under torchrun) writes and shows nothing."""

    def __init__(self, folder: Path, total_steps: int, initial_step: int = 0, desc: str = "", enabled: bool = True):
        self.folder, self.enabled = (Path(folder) if enabled else None), enabled
        self.metrics = open(self.folder / "metrics.jsonl", "a") if enabled else None
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.folder / "tb"), purge_step=initial_step + 1)
            except ImportError:
                pass
        self.bar = progress(total_steps, desc, initial=initial_step, disable=not enabled)

    def log(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        self.metrics.write(json.dumps({"step": step, **scalars}) + "\n")
        self.metrics.flush()
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(key, value, step)

    def write(self, line: str) -> None:
        """A line above the bar."""
        if self.enabled:
            self.bar.write(line)

    def write_samples(self, step: int, prompts: list, texts: list, extras: list = None) -> None:
        """One row per text; `extras` (one dict per text, e.g. its rewards) are merged into the rows."""
        if not self.enabled:
            return
        extras = extras or [{}] * len(texts)
        with open(self.folder / "samples.jsonl", "a") as f:
            f.writelines(json.dumps({"step": step, "prompt": p, "text": t, **e}) + "\n"
                         for p, t, e in zip(prompts, texts, extras))

    def close(self) -> None:
        self.bar.close()
        if self.enabled:
            self.metrics.close()
            if self.tb is not None:
                self.tb.close()
