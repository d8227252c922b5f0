"""The run folder: config.json's layout and its one reader, old folders, and the create / resume / refuse rule."""
import json
from dataclasses import asdict

import pytest

from advgen import models, runs
from advgen.config import AdversarialConfig, PretrainConfig
from advgen.errors import AdvgenError


def test_config_json_holds_one_dict_per_stage(tmp_path):
    pre, adv = PretrainConfig(field="review", condition=["rating"]), AdversarialConfig(init="runs/x", k=3)
    runs.write_config(tmp_path / "a", pre)
    runs.write_config(tmp_path / "b", pre, adv)
    assert set(json.loads((tmp_path / "a" / "config.json").read_text())) == {"stage", "pretrain"}
    stored = runs.read_config(tmp_path / "b")
    assert stored["stage"] == "adversarial" and stored["pretrain"] == pre and stored["adversarial"] == adv


def test_folders_written_before_the_stage_layout_still_load(tmp_path):
    """Until this layout, config.json was the pretrain config at the top level, plus "adversarial"."""
    pre, adv = PretrainConfig(generator="scratch:gpt2-tiny", condition=["department"]), AdversarialConfig(init="r")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps({**asdict(pre), "adversarial": asdict(adv)}))
    model, tokenizer = models.load_generator("scratch:gpt2-tiny")
    models.save(model, tokenizer, tmp_path / "old" / "generator")
    run = runs.load(tmp_path / "old")
    assert run.cfg == pre and run.adversarial == adv and run.model.config.n_layer == 2
    assert runs.claim(tmp_path / "old", "adversarial", None, resume=True) == adv


def test_claim_refuses_an_existing_folder_and_resumes_only_its_own_stage(tmp_path):
    cfg = PretrainConfig()
    assert runs.claim(tmp_path / "new", "pretrain", cfg, resume=False) is cfg
    assert not (tmp_path / "new").exists()  # nothing is written
    runs.write_config(tmp_path / "run", cfg)
    with pytest.raises(AdvgenError, match="already exists: pass --resume"):
        runs.claim(tmp_path / "run", "pretrain", cfg, resume=False)
    assert runs.claim(tmp_path / "run", "pretrain", None, resume=True) == cfg
    with pytest.raises(AdvgenError, match="not an adversarial run"):
        runs.claim(tmp_path / "run", "adversarial", None, resume=True)
    with pytest.raises(AdvgenError, match="nothing to resume"):
        runs.claim(tmp_path / "empty", "pretrain", None, resume=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("[1, 2]")
    with pytest.raises(AdvgenError, match="not a JSON object"):
        runs.read_config(tmp_path / "bad")


def test_open_folder_writes_the_config_once_and_drops_rows_a_resumed_run_replays(tmp_path):
    run, cfg = tmp_path / "run", PretrainConfig()
    runs.open_folder(run, None, cfg)
    assert runs.read_config(run)["pretrain"] == cfg
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(5)))
    runs.write_config(run, PretrainConfig(seed=7))  # a resumed run keeps what is there
    runs.open_folder(run, 2, cfg)
    assert runs.read_config(run)["pretrain"].seed == 7
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
