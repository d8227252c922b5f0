"""experiments/: the smoke chain end to end (train, sweep, FED/MAUVE, figures, tables, paper.md's quoted tables),
its resume rules, and the interpolation the tables rest on."""
import csv
import gzip
import json
import math
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "experiments"))

import common  # noqa: E402


def smoke(root: Path) -> str:
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), "--smoke", "--root", str(root)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    smoke(root)
    return root


def test_the_smoke_chain_writes_every_log_figure_and_table(smoke_root):
    logs = smoke_root / "runs" / "coco"
    for run in ("coco-mle-s0", "coco-adv-s0", "coco-mle-s1", "coco-adv-s1"):
        for name in ("config.json", "metrics.jsonl", "summary.json", "sweep.csv", "fed-mauve-T1.00.json"):
            assert (logs / run / name).is_file(), (run, name)
        assert sorted(p.name for p in (logs / run / "samples").iterdir()) == ["T0.50.txt.gz", "T1.00.txt.gz",
                                                                               "T1.50.txt.gz"]
        assert not (logs / run / "checkpoint").exists() and not (logs / run / "generator").exists()
        held_out = common.read_csv(logs / run / "sweep-held-out.csv")
        assert [r["temperature"] for r in held_out] == [0.5, 1.0, 1.5] and {r["n"] for r in held_out} == {40}
    for name in ("data-texygen.json", "data-fed-mauve.json", "data-test-halves-fed-mauve.json", "data-held-out.json"):
        assert (logs / name).is_file(), name
    plt = common.pyplot()
    for name in ("figure1", "figure2"):
        image = plt.imread(smoke_root / "paper" / "figures" / f"{name}.png")  # opens as a picture
        assert image.ndim == 3 and image.shape[0] > 500 and image.std() > 0.01
        assert (smoke_root / "paper" / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    table1 = list(csv.reader((smoke_root / "paper" / "tables" / "table1.csv").open()))
    labels = [row[0] for row in table1[1:]]
    assert "Texygen MLE (published)" in labels and "COCO train captions (real data)" in labels
    mle = table1[labels.index("advgen MLE") + 1]
    assert mle[1] == "2" and "±" in mle[3]  # two seeds: mean ± std
    sweep0 = common.read_csv(logs / "coco-mle-s0" / "sweep.csv")
    sweep1 = common.read_csv(logs / "coco-mle-s1" / "sweep.csv")
    bleu4 = [common.at_temperature(s, 1.0)["bleu-4"] for s in (sweep0, sweep1)]
    assert mle[header_index(table1, "BLEU-4")] == common.fmt(*common.mean_std(bleu4))
    for name in ("table2", "table3", "table4", "table5", "table10", "table11", "table12"):
        assert (smoke_root / "paper" / "tables" / f"{name}.md").read_text().startswith("| ")
    paper = (smoke_root / "paper" / "paper.md").read_text()  # the copy whose quoted tables were refreshed
    assert (smoke_root / "paper" / "tables" / "table1.md").read_text().strip() in paper


def test_held_out_bleu_is_against_the_train_captions_the_preset_holds_out(smoke_root):
    from advgen import metrics

    # the valid split, chosen here as the preset chooses it (a crc32 of the caption, buckets 90-99), by hand
    train = (smoke_root / "coco_train.txt").read_text().splitlines()
    held_out = [c for c in train if zlib.crc32(c.encode()) % 100 >= 90]
    assert 0 < len(held_out) < len(train) // 5
    report = json.loads((smoke_root / "runs" / "coco" / "data-held-out.json").read_text())
    assert report["n_references"] == len(held_out) and report["n_samples"] == len(train) - len(held_out)
    run = smoke_root / "runs" / "coco" / "coco-adv-s1"
    samples = gzip.decompress((run / "samples" / "T1.00.txt.gz").read_bytes()).decode().split("\n")[:-1]
    at_one = common.at_temperature(common.read_csv(run / "sweep-held-out.csv"), 1.0)
    assert at_one["bleu-4"] == pytest.approx(metrics.bleu(samples, held_out, 4, tokenize="treebank"), rel=1e-9)
    # and the tables read it in place of the test captions' BLEU, keeping the sweep's Self-BLEU
    swept = common.sweeps(smoke_root / "runs" / "coco", references="held-out")["adv"]["1"]
    assert common.at_temperature(swept, 1.0)["bleu-4"] == at_one["bleu-4"]
    assert common.at_temperature(swept, 1.0)["self-bleu-4"] == common.at_temperature(
        common.read_csv(run / "sweep.csv"), 1.0)["self-bleu-4"]


def header_index(table, name):
    return table[0].index(name)


def test_a_finished_chain_is_skipped_and_a_missing_log_is_redone(smoke_root):
    logs = smoke_root / "runs" / "coco"
    summary = (logs / "coco-mle-s1" / "summary.json").read_text()
    report = logs / "coco-adv-s1" / "fed-mauve-T1.00.json"
    before = json.loads(report.read_text())["metrics"]
    report.unlink()
    out = smoke(smoke_root)
    assert "seed 0: complete" in out and "seed 1: complete" not in out
    assert "advgen pretrain" not in out and "advgen adversarial" not in out  # both runs are finished in the work folder
    assert out.count("advgen evaluate") == 1  # the missing report, nothing else
    assert (logs / "coco-mle-s1" / "summary.json").read_text() == summary
    assert json.loads(report.read_text())["metrics"] == pytest.approx(before, rel=1e-6)


def test_interpolation_at_a_value_between_two_sweep_points():
    rows = [{"temperature": 0.9, "bleu-4": 0.40, "self-bleu-4": 0.70},
            {"temperature": 1.0, "bleu-4": 0.30, "self-bleu-4": 0.55},
            {"temperature": 1.1, "bleu-4": 0.20, "self-bleu-4": 0.40}]
    at = common.interpolate_at(rows, "bleu-4", 0.25, ["self-bleu-4"])
    assert at["temperature"] == pytest.approx(1.05) and at["self-bleu-4"] == pytest.approx(0.475)
    assert common.interpolate_at(rows, "bleu-4", 0.5, ["self-bleu-4"]) is None  # outside the sweep
    got = common.curve_at(rows, "bleu-4", "self-bleu-4", np.array([0.2, 0.35, 0.45]))
    assert got[:2] == pytest.approx([0.40, 0.625]) and math.isnan(got[2])
    assert common.mean_std([1.0, 3.0]) == pytest.approx((2.0, math.sqrt(2)))
    assert common.fmt(0.30512) == "0.305" and common.fmt(0.3, 0.01) == "0.300 ± 0.010"


def test_matching_reads_the_frontier_above_the_quality_peak():
    # below T=0.9 the generator collapses: BLEU falls again while Self-BLEU keeps rising, a dominated branch that
    # would otherwise be interpolated across (0.30 would match between T=0.5 and T=1.0)
    rows = [{"temperature": 0.5, "bleu-4": 0.31, "self-bleu-4": 0.97},
            {"temperature": 0.9, "bleu-4": 0.40, "self-bleu-4": 0.70},
            {"temperature": 1.0, "bleu-4": 0.30, "self-bleu-4": 0.55},
            {"temperature": 1.1, "bleu-4": 0.20, "self-bleu-4": 0.40}]
    assert [r["temperature"] for r in common.frontier(rows, "bleu-4")] == [0.9, 1.0, 1.1]
    assert common.curve_at(rows, "bleu-4", "self-bleu-4", np.array([0.30, 0.31]))[0] == pytest.approx(0.55)
    assert common.curve_at(rows, "bleu-4", "self-bleu-4", np.array([0.31]))[0] == pytest.approx(0.565)
    assert common.interpolate_at(rows, "bleu-4", 0.31, ["self-bleu-4"])["temperature"] == pytest.approx(0.99)


def test_the_goal_verdict_reads_separation_and_every_pair():
    import table12

    grid = np.array([0.25, 0.30, 0.35, 0.40])
    mle = np.array([[0.40, 0.50, 0.60, np.nan],           # (pairs, grid): the first MLE curve stops before 0.40
                    [0.42, 0.52, 0.62, 0.72]])
    adv = np.array([[0.41, 0.40, 0.50, 0.70],             # pair 1 ahead from 0.30, pair 2 at 0.25 and 0.35
                    [0.40, 0.53, 0.52, 0.70]])
    v = table12.verdict(grid, mle, adv)
    assert v["reached"] == [0.25, 0.30, 0.35]               # 0.40 is outside one curve
    assert v["ahead"] == [0.25, 0.30, 0.35] and v["every"] == [0.35]
    assert v["at"] == pytest.approx([-0.10, 0.01])
    # separated: 0.35 (MLE 0.61 ± 0.014, adversarial 0.51 ± 0.014); at 0.30 the adversarial spread (± 0.092) overlaps
    assert v["adversarial separated"] == [0.35] and v["mle separated"] == []
    flipped = table12.verdict(grid, adv, mle)              # the same numbers with the roles exchanged
    assert flipped["mle separated"] == [0.35] and flipped["every"] == [] and flipped["ahead"] == []
    single = table12.verdict(grid, mle[:1], adv[:1])        # one pair: no spread, nothing is separated
    assert single["every"] == [0.30, 0.35] and single["adversarial separated"] == []



def test_each_seed_is_read_from_its_first_instance_or_the_latest_a_tables_rows_share(tmp_path):
    # titles-*-s0 were logged before the titles frontier existed (no sweep.csv); their retrains s0r1 have one, and
    # the frontier (figure 5, table 13) pairs those, each adversarial run with the MLE run it started from.
    for name in ("titles-mle-s0", "titles-realism-s0"):
        (tmp_path / name).mkdir()
    for name, cold, hot in (("titles-mle-s0r1", 0.5, 0.2), ("titles-realism-s0r1", 0.4, 0.1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sweep.csv").write_text(
            f"run,temperature,bleu-4,self-bleu-4\n{name},0.5,0.32,{cold}\n{name},1.0,0.08,{hot}\n")
    from table5 import COLUMNS
    steps = [{"policy/loss": 0.0, **{key: float(v) for key, _ in COLUMNS}} for v in range(12)]  # 12 generator steps
    (tmp_path / "titles-realism-s0r1" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    found = common.sweeps(tmp_path, ["mle", "realism"])
    assert {model: list(by_seed) for model, by_seed in found.items()} == {"mle": ["0r1"], "realism": ["0r1"]}
    (tmp_path / "titles-mle-s1").mkdir()  # runs without the file: the first instance of each seed, or the latest
    assert {s: p.name for s, p in common.runs_by_model(tmp_path, ["mle"])["mle"].items()} == \
        {"0": "titles-mle-s0", "1": "titles-mle-s1"}
    assert {s: p.name for s, p in common.runs_by_model(tmp_path, ["mle"], latest=True)["mle"].items()} == \
        {"0r1": "titles-mle-s0r1", "1": "titles-mle-s1"}
    # with `latest`, a table's rows share the seed's latest instance that all of them have: a setting run only from
    # seed 0's first MLE takes the table's seed 0 back to that instance; where they share none, each keeps its own
    (tmp_path / "titles-click3-s0").mkdir()
    (tmp_path / "titles-ppo-s0r1").mkdir()
    pick = lambda models: {m: sorted(p.name for p in by_seed.values())
                           for m, by_seed in common.runs_by_model(tmp_path, models, latest=True).items()}
    assert pick(["mle", "click3"]) == {"mle": ["titles-mle-s0", "titles-mle-s1"], "click3": ["titles-click3-s0"]}
    assert pick(["mle", "ppo"]) == {"mle": ["titles-mle-s0r1", "titles-mle-s1"], "ppo": ["titles-ppo-s0r1"]}
    assert pick(["click3", "ppo"]) == {"click3": ["titles-click3-s0"], "ppo": ["titles-ppo-s0r1"]}
    # seed 0's first MLE swept too (reproduced later) but no adversarial run of it swept: not in table13's MLE spread
    (tmp_path / "titles-mle-s0" / "sweep.csv").write_text(
        "run,temperature,bleu-4,self-bleu-4\ntitles-mle-s0,0.5,0.32,0.9\ntitles-mle-s0,1.0,0.08,0.8\n")
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "table13.py"), "--runs", str(tmp_path),
                           "--out", str(tmp_path / "paper")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table13 = list(csv.reader((tmp_path / "paper" / "tables" / "table13.csv").open()))
    row = dict(zip(table13[0], table13[1]))
    # at BLEU-4 0.20, halfway along both curves: MLE 0.35, realism 0.25
    assert row["model"] == "advgen adversarial (realism)" and row["seed pairs"] == "1"
    assert row["adversarial - MLE at 0.20 (pairs ahead)"] == "-0.100 (1/1)"
    assert row["matched BLEU-4 reached"] == "11: 0.10-0.30" and row["values ahead in every pair"] == "11: 0.10-0.30"
    pairs = list(csv.reader((tmp_path / "paper" / "tables" / "table13-pairs.csv").open()))
    assert [r[2] for r in pairs[1:] if r[0] == "advgen MLE" and r[1] == "0.20"] == ["s0r1 0.350"]
    dynamics = list(csv.reader((tmp_path / "paper" / "tables" / "table13-dynamics.csv").open()))
    # the first 10 steps' means (0..9 -> 4.5) and the last 10's (2..11 -> 6.5), one seed: no spread
    assert [row[:4] for row in dynamics[1:]] == [["advgen adversarial (realism)", "1 seeds", "first", "4.500"],
                                                 ["advgen adversarial (realism)", "1 seeds", "last", "6.500"]]


def test_judged_counts_what_ngram_metrics_cannot_see(tmp_path):
    # one-word and empty titles have no bigram: the samples' own counts are what shows a collapse onto them
    (tmp_path / "eval.json").write_text(json.dumps({"metrics": {"distinct-2": 1.0}}))
    texts = ["Disappointed", "Disappointed", "Disappointed", "", "Too big"]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    v = common.judged(tmp_path / "eval.json", tmp_path / "samples.jsonl")
    assert v["distinct-2"] == 1.0 and v["top-text"] == "Disappointed" and v["top-share"] == pytest.approx(0.6)
    assert v["distinct-texts"] == pytest.approx(0.6) and v["one-word"] == pytest.approx(0.6)
    assert v["empty"] == pytest.approx(0.2) and v["words"] == pytest.approx(1.0)


def test_paper_md_quotes_the_current_tables(tmp_path):
    import paper

    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "table9.md").write_text("| a |\n|---|\n| 1 |\n\nnote\n")
    md = tmp_path / "paper.md"
    md.write_text("text\n<!-- table table9 -->\n<!-- end table9 -->\nmore\n")
    paper.refresh_tables(md, tmp_path / "tables")
    assert md.read_text() == "text\n<!-- table table9 -->\n| a |\n|---|\n| 1 |\n\nnote\n<!-- end table9 -->\nmore\n"
    (tmp_path / "tables" / "table9.md").write_text("| a |\n|---|\n| 2 |\n")  # a new table replaces the old one
    paper.refresh_tables(md, tmp_path / "tables")
    assert md.read_text() == "text\n<!-- table table9 -->\n| a |\n|---|\n| 2 |\n<!-- end table9 -->\nmore\n"


def test_the_ecommerce_smoke_chain_judges_steered_titles_and_resumes(tmp_path):
    def ecommerce(*args):
        done = subprocess.run([sys.executable, str(REPO / "experiments" / "ecommerce.py"), "--smoke", "--root",
                               str(tmp_path), *args], cwd=REPO, capture_output=True, text=True)
        return done

    first = ecommerce()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    logs = tmp_path / "runs" / "ecommerce"
    for name in ("sentiment-reward", "sentiment-judge", "click-reward", "click-judge", "review-click-reward",
                 "review-click-judge"):
        assert sorted(p.name for p in (logs / "scorers" / name).iterdir()) == ["scorer.json", "summary.json"]
    reward, judge = (json.loads((logs / "scorers" / n / "scorer.json").read_text())["config"]["corpus"]
                     for n in ("sentiment-reward", "sentiment-judge"))
    assert reward.endswith("products-even.jsonl") and judge.endswith("products-odd.jsonl")
    for run in ("titles-mle-s0", "titles-realism-s0", "titles-style3-click1-s0"):
        assert not (logs / run / "generator").exists() and not (logs / run / "checkpoint").exists()
        metrics = json.loads((logs / run / "eval-T1.00.json").read_text())["metrics"]
        for key in ("bleu-4", "self-bleu-4", "distinct-2", "click/scorer-click-judge",
                    "style-balanced-accuracy/scorer-sentiment-judge", "style-accuracy/scorer-sentiment-reward"):
            assert 0 <= metrics[key] <= 1, (run, key)
        rows = [json.loads(line) for line in (logs / run / "samples-T1.00.jsonl").read_text().splitlines()]
        assert len(rows) == 24 and all("rating" in r["condition"] for r in rows)
    config = json.loads((logs / "titles-style3-click1-s0" / "config.json").read_text())["adversarial"]
    assert (config["w_style"], config["w_click"]) == (3.0, 1.0) and config["style_scorer"].endswith("sentiment-reward")
    table7 = list(csv.reader((tmp_path / "paper" / "tables" / "table7.csv").open()))
    assert [row[0] for row in table7[1:]] == ["mle", "realism", "style3-click1", "validation titles (real data)"]
    real = json.loads((logs / "data-valid.json").read_text())["metrics"]
    assert 0 <= real["style-balanced-accuracy/scorer-sentiment-judge"] <= 1 and real["bleu-4"] > 0
    assert list(csv.reader((tmp_path / "paper" / "tables" / "table6.csv").open()))[1][0] == "sentiment-reward"
    variance = json.loads((logs / "titles-realism-s0" / "baseline-variance.json").read_text())
    assert variance["ratio_to_none"]["none"] == 1 and set(variance["ratio_to_none"]) == {"none", "ema", "loo", "self-critical"}
    table8 = list(csv.reader((tmp_path / "paper" / "tables" / "table8.csv").open()))
    assert [row[0] for row in table8[1:]] == ["loo"]  # the one baseline the smoke chain trains
    assert [row[0] for row in list(csv.reader((tmp_path / "paper" / "tables" / "table9.csv").open()))[1:]] == ["MLE", "0.5"]
    seeds9 = list(csv.reader((tmp_path / "paper" / "tables" / "table9-seeds.csv").open()))
    assert [row[:2] for row in seeds9[1:]] == [["MLE", "titles-mle-s0"], ["0.5", "titles-realism-s0"]]
    for run in ("titles-mle-s0", "titles-realism-s0"):  # the titles frontier
        assert [r["temperature"] for r in common.read_csv(logs / run / "sweep.csv")] == [0.5, 1.0, 1.5]
    assert not (logs / "titles-style3-click1-s0" / "sweep.csv").exists()
    for name in ("figure3", "figure4", "figure5"):
        assert (tmp_path / "paper" / "figures" / f"{name}.png").is_file()
    assert (tmp_path / "paper" / "tables" / "table13.md").read_text().startswith("| references |")
    # the long texts: reviews from their own MLE generator, measured without the title scorers, in table 14 only
    for run in ("reviews-mle-s0", "reviews-dtarget-s0"):
        metrics = json.loads((logs / run / "eval-T1.00.json").read_text())["metrics"]
        assert 0 <= metrics["self-bleu-4"] <= 1 and not any(key.startswith(("style", "click")) for key in metrics)
        assert json.loads((logs / run / "config.json").read_text())["pretrain"]["field"] == "review"
    assert json.loads((logs / "reviews-dtarget-s0" / "config.json").read_text())["adversarial"]["disc_target_accuracy"] == 0.7
    table14 = list(csv.reader((tmp_path / "paper" / "tables" / "table14.csv").open()))
    assert [row[0] for row in table14[1:]] == ["MLE (reference)", "target-accuracy discriminator"]
    assert table14[1][2:4] == ["–", "–"] and table14[2][2] == "1"  # the smoke recipe's one warm-up step
    # the pretrained generator's chain (SmolLM2 in full runs; the smoke sizes swap in the tiny model): titles judged
    # by the title scorers, not swept, in table 15 beside the from-scratch rows of the same settings
    for run in ("smollm2-mle-s0", "smollm2-style3-s0"):
        assert "style-accuracy/scorer-sentiment-judge" in json.loads((logs / run / "eval-T1.00.json").read_text())["metrics"]
        assert not (logs / run / "sweep.csv").exists()
    pretrain = json.loads((logs / "smollm2-style3-s0" / "config.json").read_text())["pretrain"]
    assert (pretrain["field"], pretrain["condition"], pretrain["lr"], pretrain["max_steps"]) == ("title", ["rating"], 1e-4, 8)
    table15 = list(csv.reader((tmp_path / "paper" / "tables" / "table15.csv").open()))
    assert [(row[0][:4], row[1], row[5]) for row in table15[1:]] == [
        ("from", "mle", "1.0"), ("from", "realism", "1.0"), ("Smol", "mle", "1.0"), ("Smol", "style3", "1.0")]
    samples = list(csv.reader((tmp_path / "paper" / "tables" / "table15-samples.csv").open()))
    assert len(samples) == 1 + 4 * 10 and {row[2] for row in samples[1:]} == {
        "titles-mle-s0", "titles-realism-s0", "smollm2-mle-s0", "smollm2-style3-s0"}
    seeds15 = list(csv.reader((tmp_path / "paper" / "tables" / "table15-seeds.csv").open()))
    assert [row[:2] + row[5:6] for row in seeds15[1:]] == [  # SmolLM2 runs only
        ["mle", "smollm2-mle-s0", "1.0"], ["style3", "smollm2-style3-s0", "1.0"]]
    assert seeds15[1][3] == "–" and 0 <= float(seeds15[2][3]) <= 1  # no adversarial steps for the MLE
    assert seeds15[2][-1].endswith("%)")
    # A finished chain is skipped; an unknown setting is refused before anything runs.
    again = ecommerce()
    assert again.returncode == 0 and "seed 0: complete" in again.stdout and "$ advgen" not in again.stdout, again.stdout
    bad = ecommerce("--settings", "style9")
    assert bad.returncode == 2 and "--settings" in bad.stderr
    # Judges recorded as other scorers (trained again elsewhere): every report is judged again from its samples.
    record = json.loads((logs / "judges.json").read_text())
    (logs / "judges.json").write_text(json.dumps({**record, "click-judge": {"steps": -1}}))
    rejudged = ecommerce()
    assert rejudged.returncode == 0, rejudged.stdout[-3000:] + rejudged.stderr[-3000:]
    assert rejudged.stdout.count("$ advgen evaluate") == 6  # 5 title runs at T=1 and the validation titles
    assert "advgen train-scorer" not in rejudged.stdout and json.loads((logs / "judges.json").read_text()) == record
    # A committed MLE that is not the work folder's checkpoint (trained on another machine), and a setting missing:
    # every setting of the seed runs again from the work folder's MLE, logged with it under the seed label 0r1 (the
    # tables read the latest instance, so their rows share one MLE); the first instance's logs stay.
    summary = json.loads((logs / "titles-mle-s0" / "summary.json").read_text())
    (logs / "titles-mle-s0" / "summary.json").write_text(json.dumps({**summary, "valid_ppl": summary["valid_ppl"] + 1}))
    shutil.rmtree(logs / "titles-style3-click1-s0")
    retrained = ecommerce()
    assert retrained.returncode == 0, retrained.stdout[-3000:] + retrained.stderr[-3000:]
    assert "advgen pretrain" not in retrained.stdout and retrained.stdout.count("advgen adversarial") == 2
    for run in ("titles-mle-s0r1", "titles-realism-s0r1", "titles-style3-click1-s0r1", "titles-realism-s0"):
        assert complete_logs(logs / run), run
    assert json.loads((logs / "titles-mle-s0r1" / "summary.json").read_text()) == summary
    assert (logs / "titles-realism-s0r1" / "sweep.csv").is_file() and not (logs / "reviews-mle-s0r1").exists()
    # A chain measured again (a report missing) keeps the logs already there, as the first training wrote them.
    (logs / "titles-mle-s0r1" / "summary.json").write_text(json.dumps({**summary, "wall_seconds": -1.0}))
    (logs / "titles-realism-s0r1" / "eval-T1.00.json").unlink()
    remeasured = ecommerce()
    assert remeasured.returncode == 0, remeasured.stdout[-3000:] + remeasured.stderr[-3000:]
    assert "advgen pretrain" not in remeasured.stdout and "advgen adversarial" not in remeasured.stdout
    assert json.loads((logs / "titles-mle-s0r1" / "summary.json").read_text())["wall_seconds"] == -1.0
    assert complete_logs(logs / "titles-realism-s0r1")


def complete_logs(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "summary.json", "eval-T1.00.json"))


def test_a_retrained_mle_gets_its_own_seed_label(tmp_path):
    def commit(name, summary):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))

    first, second = {"steps": 10, "valid_ppl": 30.55, "test_ppl": 74.0}, {"steps": 10, "valid_ppl": 30.63, "test_ppl": 74.7}
    assert common.mle_instance(tmp_path, "coco-mle", 0, first) == "0"  # nothing committed yet
    commit("coco-mle-s0", first)
    assert common.mle_instance(tmp_path, "coco-mle", 0, {**first, "wall_seconds": 5}) == "0"  # the same checkpoint
    assert common.mle_instance(tmp_path, "coco-mle", 0, second) == "0r1"
    commit("coco-mle-s0r1", second)
    assert common.mle_instance(tmp_path, "coco-mle", 0, second) == "0r1"
    assert common.mle_instance(tmp_path, "coco-mle", 0, {**second, "steps": 11}) == "0r2"
    commit("coco-mle-s10", first)
    commit("coco-mleterm-s0", first)
    assert [p.name for p in common.instances(tmp_path, "coco-mle", 0)] == ["coco-mle-s0", "coco-mle-s0r1"]
    assert sorted(["1", "0r1", "10", "0", "2"], key=common.seed_order) == ["0", "0r1", "1", "2", "10"]
