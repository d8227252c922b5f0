"""The run folder: its layout, its config.json, loading a run, its prompts, sampling from it, and the
create / resume / refuse rule that `advgen pretrain` and `advgen adversarial` share.

    runs/<name>/
      config.json          {"stage": "pretrain" | "adversarial", "pretrain": {...}, "adversarial": {...}}
      generator/           HF format (best validation loss after pretrain; latest after adversarial)
      discriminator/       adversarial runs: HF format + scorer.json
      checkpoint/state.pt  everything a resumed run needs (weights, optimizers, RNG, step)
      metrics.jsonl  samples.jsonl  summary.json  tb/

An adversarial run keeps its init run's pretrain config under "pretrain", so every later stage reads
the corpus, field and prompts of any run the same way. Folders written before config.json had a
"stage" (the pretrain config at the top level, the adversarial one under "adversarial") still load.
"""
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import NamedTuple, Optional

from advgen import data, models, sampling
from advgen.config import AdversarialConfig, PretrainConfig
from advgen.errors import AdvgenError
from advgen.runlog import truncate_jsonl, write_json

STAGES = {"pretrain": PretrainConfig, "adversarial": AdversarialConfig}


def checkpoint_path(run) -> Path:
    return Path(run) / "checkpoint" / "state.pt"


# ----------------------------------------------------------------------------------------------
# config.json


def write_config(run, pretrain: PretrainConfig, adversarial: Optional[AdversarialConfig] = None) -> None:
    stage = "adversarial" if adversarial is not None else "pretrain"
    stored = {"stage": stage, "pretrain": asdict(pretrain)}
    if adversarial is not None:
        stored["adversarial"] = asdict(adversarial)
    write_json(Path(run) / "config.json", stored)


def read_config(run) -> dict:
    """config.json -> {"stage": name, "pretrain": PretrainConfig, "adversarial": AdversarialConfig or None}."""
    path = Path(run) / "config.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AdvgenError(f"cannot read run config {path}: {e}") from None
    if not isinstance(stored, dict):
        raise AdvgenError(f"run config {path} is not a JSON object")
    if "stage" not in stored:  # the layout before "stage": the pretrain config at the top level
        stored = {"stage": "adversarial" if "adversarial" in stored else "pretrain",
                  "pretrain": {k: v for k, v in stored.items() if k != "adversarial"},
                  "adversarial": stored.get("adversarial")}
    if stored["stage"] not in STAGES or not isinstance(stored.get("pretrain"), dict):
        raise AdvgenError(f"run config {path} has no pretrain section or an unknown stage {stored.get('stage')!r}")
    out = {"stage": stored["stage"]}
    for name, cls in STAGES.items():
        values = stored.get(name)
        known = {f.name for f in fields(cls)}
        out[name] = cls(**{k: v for k, v in values.items() if k in known}) if isinstance(values, dict) else None
    return out


# ----------------------------------------------------------------------------------------------
# Creating, resuming or refusing a run folder


def claim(run, stage: str, cfg, resume: bool):
    """The config a stage runs with: with resume, the run's own stored config (not the flags); without, cfg,
    provided the folder does not exist yet (or is empty). Nothing is written."""
    run = Path(run)
    if not resume:
        if run.exists() and any(run.iterdir()):
            raise AdvgenError(f"run folder {run} already exists: pass --resume to continue it, or another --out")
        return cfg
    if not (run / "config.json").exists():
        raise AdvgenError(f"nothing to resume: {run / 'config.json'} does not exist")
    stored = read_config(run)
    if stored[stage] is None:
        raise AdvgenError(f"{run} is not an {stage} run (its config.json has no '{stage}' section)")
    return stored[stage]


def open_folder(run, resumed_step: Optional[int], pretrain: PretrainConfig,
                adversarial: Optional[AdversarialConfig] = None) -> None:
    """Create the folder (rank 0, after `claim` and every input check). A new run writes config.json; a
    resumed one (resumed_step not None) drops the log rows after its checkpoint, which it will replay."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    if resumed_step is None:
        write_config(run, pretrain, adversarial)
    for name in ("metrics.jsonl", "samples.jsonl"):
        truncate_jsonl(run / name, -1 if resumed_step is None else resumed_step)


# ----------------------------------------------------------------------------------------------
# Loading a run, its prompts, sampling from it


class Run(NamedTuple):
    path: Path
    cfg: PretrainConfig                      # the corpus, field, conditions and prompts of the generator
    adversarial: Optional[AdversarialConfig]
    model: object                            # the generator, on the CPU
    tokenizer: object


def load(path) -> Run:
    """A run folder -> its config and generator, or one line saying what is wrong."""
    run = Path(path)
    if not (run / "config.json").is_file() or not (run / "generator" / "config.json").is_file():
        raise AdvgenError(f"{run} is not a run folder (needs config.json and generator/)")
    stored = read_config(run)
    model, tokenizer = _generator(str(run / "generator"), f"{run}: cannot load its generator")
    return Run(run, stored["pretrain"], stored["adversarial"], model, tokenizer)


def load_with_task(spec: str, task_run) -> Run:
    """A bare generator (a model spec, e.g. smollm2-135m before fine-tuning, or another run folder's generator)
    with the task of a run folder: its corpus, splits, field, conditions, source and lengths, so that it is
    prompted and measured exactly as that run's generator is."""
    run = Path(task_run)
    if not (run / "config.json").is_file():
        raise AdvgenError(f"--task-from {run} is not a run folder (needs config.json)")
    stored = read_config(run)
    source = Path(spec) / "generator" if (Path(spec) / "generator" / "config.json").is_file() else spec
    model, tokenizer = _generator(str(source), f"cannot load the generator {spec}")
    return Run(run, stored["pretrain"], None, model, tokenizer)


def _generator(source: str, failure: str):
    try:
        return models.load_generator(source)
    except AdvgenError:
        raise
    except Exception as e:  # noqa: BLE001 - a broken generator folder becomes one line
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise AdvgenError(f"{failure} ({reason})") from None


def prompt(tokenizer, cfg: PretrainConfig, record: dict) -> list:
    """The token ids a generator of this config is prompted with for a corpus row (see advgen.data)."""
    return data.prompt_ids(tokenizer, record, cfg.field, cfg.condition, cfg.source, cfg.max_source_tokens)


def sample_rows(model, tokenizer, cfg: PretrainConfig, records: list, n: int, max_new_tokens: Optional[int] = None,
         batch_size: int = 64, seed: int = 0, **controls):
    """Yield (start, Samples) for n samples prompted by `records` (cycled), in batches (sampling.sample_batches)."""
    prompts = [prompt(tokenizer, cfg, records[i % len(records)]) for i in range(n)]
    yield from sampling.sample_batches(model, tokenizer, prompts, max_new_tokens or cfg.max_target_tokens,
                                       batch_size, seed, **controls)


def sample_texts(model, tokenizer, cfg: PretrainConfig, records: list, n: int, **kwargs) -> list:
    """n decoded samples prompted by `records` (cycled); kwargs as `sample_rows`."""
    return [text for _, s in sample_rows(model, tokenizer, cfg, records, n, **kwargs)
            for text in sampling.decode(tokenizer, s)]
