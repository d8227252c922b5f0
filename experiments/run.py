"""Train and measure every run the paper needs (`make experiments`); resumable, one seed's chain at a time.

For each seed, on COCO captions (experiments/data/coco):

    coco-mle-s<seed>   advgen pretrain --preset coco --seed <seed>             (MLE to early stopping)
    coco-adv-s<seed>   advgen adversarial --preset coco --init coco-mle-s<seed> (realism only)
    coco-<variant>-s<seed>  the same with one remedy of VARIANTS (cold, mleterm, dtarget, dense, ppo)
    each of the two:   advgen sweep --temperatures 0.5:1.5:0.1 --n 10000 --tokenize treebank
                       advgen evaluate <samples> --metrics fed,mauve  at T=1 and at the temperature whose
                       Self-BLEU-4 is nearest the data's (the train captions' own, measured once)

Checkpoints live in the work folder (runs/paper, not committed); the logs the figures and tables read are copied
into paper/runs/coco/<run>/ (config.json, metrics.jsonl, samples.jsonl, summary.json, sweep.csv,
samples/T<t>.txt.gz, fed-mauve-T<t>.json) after every step. A run whose logs are all in paper/runs is skipped.
Otherwise it restarts from the first step whose output is missing from the work folder: a killed training run
resumes from its checkpoint, a killed sweep keeps its finished points. The adversarial runs need their seed's MLE
checkpoint: where the work folder was lost (run folders do not outlast a machine), the MLE run is trained again
by the same command, and the logs of the finished runs are kept. That retrain is deterministic on one machine but
not across machines (the last bits of float arithmetic differ): a checkpoint that differs from the committed one
is another MLE generator, logged with the runs started from it under the seed label <seed>r<k> (coco-mle-s0r1,
coco-cold-s0r1), so that every adversarial run is compared with the MLE it started from.

`--smoke` runs the whole chain at tiny sizes (two seeds, 400 train and 200 test captions, three
temperatures, 40 samples) under --root, then
`experiments/paper.py` on its logs; CI runs it (tests/test_experiments.py).
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common
from advgen import config, data, metrics
from advgen.evaluate import SWEEP_MAX_N, write_sweep

REPO = Path(__file__).resolve().parent.parent
DATA = Path("experiments/data/coco")  # relative to the repository root, as the coco preset's paths are
TEMPERATURES = [round(0.5 + 0.1 * i, 1) for i in range(11)]
LOGS = ["config.json", "metrics.jsonl", "samples.jsonl", "summary.json"]

# The adversarial runs of each seed beside the plain one (coco-adv): the remedies of the literature, each a change of
# the coco preset (run names coco-<variant>-s<seed>). ColdGANs' colder exploration with clipped importance weights;
# a maximum-likelihood term on real captions in every step; a discriminator kept in its useful range; realism
# rewards per token from the discriminator's score of every prefix (ScratchGAN); PPO's clipped steps, 4 per batch.
VARIANTS = {"adv": [],
            "cold": ["--rollout-temperature", 0.7, "--is-clip", 5],
            "mleterm": ["--mle-coef", 1.0],
            "dtarget": ["--disc-target-accuracy", 0.7, "--disc-label-smoothing", 0.1],
            "dense": ["--dense-rewards"],
            "ppo": ["--ppo-epochs", 4, "--ppo-clip", 0.2]}
FULL = dict(pretrain=[], adversarial=[], temperatures=TEMPERATURES, n=10_000, batch_size=500, seeds="0,1,2",
            variants=list(VARIANTS))
SMOKE = dict(pretrain=["--generator", "scratch:gpt2-tiny", "--tokenizer", "corpus:300", "--epochs", "0",
                       "--max-steps", "12", "--eval-every", "6", "--batch-size", "16", "--max-target-tokens", "20"],
             adversarial=["--discriminator", "scratch:bert-tiny", "--max-steps", "3", "--disc-warmup", "2",
                          "--prompts-per-step", "4", "--k", "2", "--eval-samples", "8", "--checkpoint-every", "2",
                          "--log-samples-every", "1"],
             temperatures=[0.5, 1.0, 1.5], n=40, batch_size=40, seeds="0,1", variants=["adv", "cold"],
             captions=(400, 200))  # the first train and test captions: the chain's every step stays small


def advgen(*args, log: Path) -> None:
    """One advgen command from the repository root, its output appended to `log`; a failure stops the driver."""
    command = [sys.executable, "-m", "advgen", *map(str, args)]
    print("$ advgen " + " ".join(map(str, args)), flush=True)
    started = time.time()
    with open(log, "a") as f:
        f.write("$ " + " ".join(command) + "\n")
        f.flush()
        code = subprocess.call(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"experiments: `advgen {args[0]}` failed with exit status {code}; see {log}")
    print(f"  done in {time.time() - started:.0f} s", flush=True)


def train(stage: str, folder: Path, args: list, log: Path) -> None:
    """A training run that is complete (summary.json) is skipped, a killed one resumed from its checkpoint."""
    if (folder / "summary.json").is_file():
        return
    if (folder / "checkpoint" / "state.pt").is_file():
        advgen(stage, "--out", folder, "--resume", log=log)
        return
    shutil.rmtree(folder, ignore_errors=True)  # killed before its first checkpoint
    advgen(stage, *args, "--out", folder, log=log)


def nearest_diversity(sweep_csv: Path, target: float) -> float:
    """The sweep temperature whose Self-BLEU-4 is nearest `target` (the data's own)."""
    rows = common.read_csv(sweep_csv)
    return min(rows, key=lambda r: abs(float(r["self-bleu-4"]) - target))["temperature"]


def measure(run: str, folder: Path, work: Path, logs: Path, settings: dict, references: Path, data_self_bleu4: float,
            held_out: list, log: Path) -> None:
    """The sweep of one run (its checkpoint in `folder`), its BLEU against the `held_out` train captions, and
    FED/MAUVE at T=1 and at the data's diversity, into its log folder logs/<run>."""
    sweep = work / "sweeps" / run
    advgen("sweep", folder, "--temperatures", ",".join(map(str, settings["temperatures"])),
           "--n", settings["n"], "--batch-size", settings["batch_size"], "--tokenize", "treebank",
           "--no-realism", "--out", sweep, "--resume", log=log)
    target = logs / run
    target.mkdir(parents=True, exist_ok=True)
    for name in LOGS:
        shutil.copy2(folder / name, target / name)
    shutil.copy2(sweep / "sweep.csv", target / "sweep.csv")
    shutil.copytree(sweep / "samples" / folder.name, target / "samples", dirs_exist_ok=True)  # named by the folder
    held_out_sweep(target, held_out)
    for t in sorted({1.0, nearest_diversity(target / "sweep.csv", data_self_bleu4)}):
        report = target / f"fed-mauve-T{t:.2f}.json"
        if not report.is_file():
            advgen("evaluate", target / "samples" / f"T{t:.2f}.txt.gz", "--references", references,
                   "--metrics", "fed,mauve", "--out", report, log=log)


def coco_splits(train_file: Path, test_file: Path) -> dict:
    """The captions of the coco preset's train and valid splits. The valid split is the train captions the preset
    holds out of training (a hash of each caption puts 10 % of the train file there; the MLE run only early-stops on
    them, the discriminator never sees them): references from the train captions' own distribution, which
    Texygen's test captions are not (table10)."""
    cfg = config.resolve(config.PretrainConfig, config.PRETRAIN_PRESETS, "coco",
                         {"corpus": str(REPO / train_file), "test_corpus": str(REPO / test_file)})
    return {name: [record[cfg.field] for record in records]
            for name, records in data.load_splits(cfg).items() if name != "test"}


def held_out_sweep(folder: Path, references: list) -> None:
    """BLEU-2..5 of a logged run's sweep samples (folder/samples/T<t>.txt.gz) against the held-out train captions
    -> folder/sweep-held-out.csv (common.HELD_OUT), one row per temperature (Self-BLEU does not depend on the
    references: it is in sweep.csv). Computed from the committed samples, so it needs no checkpoint; a complete
    file is kept."""
    files = sorted((folder / "samples").glob("T*.txt.gz"))
    path = folder / common.HELD_OUT
    if not files or (path.is_file() and len(common.read_csv(path)) == len(files)):
        return
    refs = metrics.tokens(references, "treebank")
    rows = []
    for file in files:
        texts = common.read_samples(file)
        bleu = metrics.bleu_scores(metrics.tokens(texts, "treebank"), refs, SWEEP_MAX_N).mean(axis=1)
        rows.append({"run": folder.name, "temperature": float(file.name[1:-len(".txt.gz")]), "n": len(texts),
                     "references": len(references),
                     **{f"bleu-{k}": float(bleu[k - 1]) for k in range(2, SWEEP_MAX_N + 1)}})
    write_sweep(path, rows)
    print(f"  {path}", flush=True)


def complete(run: str, logs: Path, settings: dict) -> bool:
    """Every log of a run (its name with the seed label) is in `logs`."""
    folder = logs / run
    return (all((folder / name).is_file() for name in LOGS + ["sweep.csv"])
            and all((folder / "samples" / f"T{t:.2f}.txt.gz").is_file() for t in settings["temperatures"])
            and (folder / "fed-mauve-T1.00.json").is_file())


def done(model: str, seed: int, logs: Path, settings: dict) -> bool:
    """Some instance of coco-<model>-s<seed> (the seed itself or a retrain's label <seed>r<k>) is complete."""
    return any(complete(path.name, logs, settings) for path in common.instances(logs, f"coco-{model}", seed))


def reference_data(logs: Path, work: Path, train_file: Path, test_file: Path, log: Path) -> float:
    """The data's own row (the train captions as the samples, the test captions as references: Texygen's protocol,
    FED and MAUVE) -> its Self-BLEU-4, the diversity the sweeps are matched against. Also FED and MAUVE between the
    odd and the even test captions: the values of two samples of one distribution."""
    report = logs / "data-texygen.json"
    if not report.is_file():
        advgen("evaluate", train_file, "--references", test_file, "--protocol", "texygen", "--field", "text",
               "--out", report, log=log)
    if not (logs / "data-fed-mauve.json").is_file():
        advgen("evaluate", train_file, "--references", test_file, "--metrics", "fed,mauve", "--field", "text",
               "--out", logs / "data-fed-mauve.json", log=log)
    halves = logs / "data-test-halves-fed-mauve.json"
    if not halves.is_file():
        lines = (REPO / test_file).read_text().splitlines()
        for name, half in (("a", lines[0::2]), ("b", lines[1::2])):
            (work / f"test-half-{name}.txt").write_text("\n".join(half) + "\n")
        advgen("evaluate", work / "test-half-a.txt", "--references", work / "test-half-b.txt",
               "--metrics", "fed,mauve", "--field", "text", "--out", halves, log=log)
    return json.loads(report.read_text())["metrics"]["self-bleu-4"]


def held_out_data(logs: Path, work: Path, train_file: Path, test_file: Path, log: Path) -> list:
    """The held-out train captions (coco_splits), and the data's own point against them: the captions the
    generators are trained on, measured as samples by Texygen's protocol -> data-held-out.json."""
    splits = coco_splits(train_file, test_file)
    report = logs / "data-held-out.json"
    if not report.is_file():
        for name in ("train", "valid"):
            (work / f"coco_{name}_split.txt").write_text("\n".join(splits[name]) + "\n")
        advgen("evaluate", work / "coco_train_split.txt", "--references", work / "coco_valid_split.txt",
               "--protocol", "texygen", "--field", "text", "--out", report, log=log)
    return splits["valid"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, run in this order [0,1,2; smoke: 0,1]")
    parser.add_argument("--root", default=None, help="work folder for checkpoints [runs/paper; smoke: required]")
    parser.add_argument("--logs", default=None, help="committed logs [paper/runs/coco; smoke: ROOT/runs/coco]")
    parser.add_argument("--variants", default=None, help=f"comma-separated adversarial runs per seed, from "
                                                         f"{', '.join(VARIANTS)} [all; smoke: adv,cold]")
    parser.add_argument("--smoke", action="store_true", help="the whole chain at tiny sizes, then the figures")
    args = parser.parse_args(argv)
    if args.smoke and not args.root:
        parser.error("--smoke needs --root (it never writes into paper/)")
    settings = SMOKE if args.smoke else FULL
    work = Path(args.root or REPO / "runs" / "paper").resolve()
    logs = Path(args.logs or (work / "runs" / "coco" if args.smoke else REPO / "paper" / "runs" / "coco")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    log = work / "experiments.log"
    train_file, test_file = DATA / "coco_train.txt", DATA / "coco_test.txt"
    if args.smoke:
        for name, count in zip(("train", "test"), settings["captions"]):
            lines = (REPO / DATA / f"coco_{name}.txt").read_text().splitlines()[:count]
            (work / f"coco_{name}.txt").write_text("\n".join(lines) + "\n")
        train_file, test_file = work / "coco_train.txt", work / "coco_test.txt"
    data_self_bleu4 = reference_data(logs, work, train_file, test_file, log)
    held_out = held_out_data(logs, work, train_file, test_file, log)
    for folder in sorted(logs.iterdir()):  # runs logged before sweep-held-out.csv existed: from their samples
        if common.RUN_NAME.match(folder.name) and folder.is_dir():
            held_out_sweep(folder, held_out)
    variants = args.variants.split(",") if args.variants else settings["variants"]
    if any(v not in VARIANTS for v in variants):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    for seed in [int(s) for s in (args.seeds or settings["seeds"]).split(",")]:
        todo = [v for v in variants if not done(v, seed, logs, settings)]
        if not todo and done("mle", seed, logs, settings):
            print(f"seed {seed}: complete in {logs}, skipped", flush=True)
            continue
        # The MLE run every adversarial run starts from: where the work folder was lost, trained again by the same
        # command. On another machine the float rounding differs and so does the checkpoint: it is then logged,
        # with the runs started from it, under a new seed label (common.mle_instance), and finished logs are kept.
        mle_folder = work / f"coco-mle-s{seed}"
        train("pretrain", mle_folder, ["--preset", "coco", "--seed", seed, "--corpus", train_file,
                                       "--test-corpus", test_file, *settings["pretrain"]], log)
        label = common.mle_instance(logs, "coco-mle", seed, json.loads((mle_folder / "summary.json").read_text()))
        if not complete(f"coco-mle-s{label}", logs, settings):
            measure(f"coco-mle-s{label}", mle_folder, work, logs, settings, test_file, data_self_bleu4, held_out,
                    log)
        for variant in todo:
            run = f"coco-{variant}-s{label}"
            train("adversarial", work / run, ["--preset", "coco", "--init", mle_folder, "--seed", seed,
                                              *settings["adversarial"], *VARIANTS[variant]], log)
            measure(run, work / run, work, logs, settings, test_file, data_self_bleu4, held_out, log)
        print(f"seed {seed}: logs in {logs}", flush=True)
    if args.smoke:  # the figures and tables of the smoke logs, and paper.md's quoted tables refreshed in a copy
        (work / "paper").mkdir(exist_ok=True)
        shutil.copy2(REPO / "paper" / "paper.md", work / "paper" / "paper.md")
        subprocess.check_call([sys.executable, str(REPO / "experiments" / "paper.py"), "--runs", str(logs.parent),
                               "--out", str(work / "paper")], cwd=REPO)


if __name__ == "__main__":
    main()
