"""The e-commerce runs of the paper (`make experiments`, after run.py): steering product titles by reward, judged by
scorers the rewards never saw. Resumable; one seed's chain at a time.

Once, on the embedded corpus split by product id parity (experiments/tasks.py's halves):

    scorer-<label>-reward  advgen train-scorer --preset quick ... --corpus products-even.jsonl   (the reward)
    scorer-<label>-judge   advgen train-scorer --preset quick ... --corpus products-odd.jsonl    (the judge)

for the sentiment of titles (rating 1-2 / 3 / 4-5) and for click (feedback_count >= 1) on titles, and click on
reviews for the judges table. Then for each seed:

    titles-mle-s<seed>      advgen pretrain --preset quick --condition rating --seed <seed>
    titles-<setting>-s<seed> advgen adversarial --preset quick --init titles-mle-s<seed> <SETTINGS[setting]>
    each of them, at each temperature (0.8 and 1.0):
        advgen sample RUN --n N --temperature T                     (prompts: the test split's ratings)
        advgen evaluate <samples> --metrics bleu,self-bleu,distinct --scorer <every judge and reward scorer>

and for the long texts (GROUPS["long"]: does a remedy keep the discriminator from winning at once?):

    reviews-mle-s<seed>     advgen pretrain --preset quick --field review --condition department,rating --max-target-tokens 48
    reviews-<v>-s<seed>     advgen adversarial --preset quick --init reviews-mle-s<seed> <SETTINGS[reviews-<v>]>
    each measured as above, without the title scorers (BLEU against the test reviews)

and a pretrained generator on the titles task (GROUPS["pretrained"], TASKS["smollm2"]'s short CPU recipe):

    smollm2-mle-s<seed>     advgen pretrain --preset smollm2 --field title --condition rating --max-steps 400 ...
    smollm2-<v>-s<seed>     advgen adversarial --preset quick --init smollm2-mle-s<seed> --gen-lr 2e-5 ... <SETTINGS[smollm2-<v>]>
    each measured as the titles runs are (not swept: a SmolLM2 sweep would take hours on 2 CPU cores)

The style reward's target is each prompt's own sentiment (the rating the prompt states). Checkpoints stay in the
work folder (runs/paper-ecommerce); the logs that paper/ reads go to paper/runs/ecommerce/:
- each run's config.json, metrics.jsonl, samples.jsonl and summary.json, its samples-T<t>.jsonl and eval-T<t>.json;
- for the MLE, realism and remedy runs (REMEDIES: run.py's variants on the realism row), the temperature sweep 0.5-1.5 of 2,000 samples per point (sweep.csv: the titles
  frontier), and for the realism runs benchmarks/baseline_variance.py's report (baseline-variance.json);
- each scorer's scorer.json and summary.json (no weights);
- once, the first N validation titles judged the same way as samples (data-valid.json; the titles in
  data-valid-titles.jsonl).
A run whose logs are all there is skipped; a killed one resumes from its checkpoint. The adversarial runs need their
seed's MLE checkpoint: where the work folder was lost, the MLE run is trained again by the same command, and the
finished runs' logs are kept; a retrain that differs from the committed checkpoint (float rounding differs between
machines) is logged with the runs started from it under a new seed label, titles-mle-s0r1 (common.mle_instance), and
every chosen setting of that seed runs again from it: a table reads, for each seed, the latest instance that all its
rows have, so the rows of a table share one MLE generator. A retrain equal to a committed instance (the same machine
kind) is logged under that instance's label, and the settings run from it join that instance's runs.
Scorers trained again likewise differ from the committed ones: every committed report is then judged again, from
its committed samples, by the scorers of this run (rejudge; LOGS/judges.json records which), so the reward
scorers of runs trained in different sessions may differ in the last bits, the judges of a table never do.

    python experiments/ecommerce.py [--seeds 0,1,2] [--settings realism,style1,...] [--root DIR] [--logs DIR]
    python experiments/ecommerce.py --smoke --root DIR     (tiny sizes; the test suite runs it)
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import common
from run import VARIANTS, advgen, train
from tasks import product_halves

REPO = Path(__file__).resolve().parent.parent
REMEDIES = ("cold", "mleterm", "dtarget", "dense", "ppo")
# A discriminator that can win on reviews: it reads the whole review (64 tokens; the quick recipe's 32 cut most
# reviews short), learns at the quick recipe's warm-up learning rate for the whole run (2e-4, 20x its 1e-5) and is
# warmed up for 100 steps instead of 30.
FAST_DISC = ["--disc-max-length", 64, "--disc-lr", 2e-4, "--disc-warmup", 100]
# Every adversarial setting, by its run name: realism is on (weight 1) in every row, and "realism" (the quick
# preset: leave-one-out baseline, kl_coef 0.5) is the row the others change one thing of.
SETTINGS = {
    "realism": [],
    "style1": ["--w-style", 1],
    "style3": ["--w-style", 3],
    "click1": ["--w-click", 1],
    "click3": ["--w-click", 3],
    "style3-click1": ["--w-style", 3, "--w-click", 1],
    "baseline-none": ["--baseline", "none"],
    "baseline-ema": ["--baseline", "ema"],
    "baseline-self-critical": ["--baseline", "self-critical"],
    "kl0.05": ["--kl-coef", 0.05],
    "kl0.2": ["--kl-coef", 0.2],
    "kl1": ["--kl-coef", 1.0],
    # The remedies of issue 20 (run.py's COCO variants), each on the realism row: their titles frontiers.
    **{variant: VARIANTS[variant] for variant in REMEDIES},
    # When the discriminator wins at once (long texts): reviews of ~45 tokens, realism only, plain and with the two
    # remedies that keep a signal for the generator (run names reviews-<realism|dtarget|dense>-s<seed>); and, since
    # the quick recipe's discriminator does not win on reviews, a stronger one that may (FAST_DISC), plain and with
    # the target-accuracy remedy.
    "reviews-realism": [],
    "reviews-dtarget": VARIANTS["dtarget"],
    "reviews-dense": VARIANTS["dense"],
    "reviews-fastd": FAST_DISC,
    "reviews-fastd-dtarget": [*FAST_DISC, *VARIANTS["dtarget"]],
    # A pretrained generator: SmolLM2-135M on titles, realism only and with the style reward (run names
    # smollm2-<realism|style3>-s<seed>), beside the from-scratch generator's rows of the same settings.
    "smollm2-realism": [],
    "smollm2-style3": ["--w-style", 3],
}
# What each table and figure compares.
GROUPS = {"steering": ["realism", "style1", "style3", "click1", "click3", "style3-click1"],
          "baselines": ["baseline-none", "baseline-ema", "realism", "baseline-self-critical"],
          "kl": ["kl0.05", "kl0.2", "realism", "kl1"],
          "remedies": ["realism", *REMEDIES],
          "long": ["reviews-realism", "reviews-dtarget", "reviews-dense", "reviews-fastd", "reviews-fastd-dtarget"],
          "pretrained": ["smollm2-realism", "smollm2-style3"]}
# Each corpus's generator (run names <corpus>-<setting>-s<seed>): how it is trained, and the adversarial recipe its
# runs start from (a setting's flags come after it). titles: the quick preset's from-scratch GPT-2 on titles
# conditioned on the rating; reviews: the same on reviews conditioned on department and rating; smollm2: the packaged
# pretrained SmolLM2-135M fine-tuned on the titles task, sized for 2 CPU cores (400 steps of 8 titles, 1.5-2 s a
# step, validated on 20 batches; its adversarial steps take about 20 s), then the titles' adversarial recipe with a
# generator learning rate for a pretrained model (2e-5 instead of 3e-4).
TASKS = {
    "titles": dict(pretrain=["--preset", "quick", "--condition", "rating"],
                   adversarial=["--preset", "quick", "--max-steps", 100]),
    "reviews": dict(pretrain=["--preset", "quick", "--field", "review", "--condition", "department,rating",
                              "--max-target-tokens", 48],
                    adversarial=["--preset", "quick", "--max-steps", 100]),
    "smollm2": dict(pretrain=["--preset", "smollm2", "--field", "title", "--condition", "rating",
                              "--max-target-tokens", 24, "--grad-accum", 1, "--lr", 1e-4, "--warmup-steps", 10,
                              "--max-steps", 400, "--eval-every", 100, "--eval-batches", 20, "--test-batches", 50],
                    adversarial=["--preset", "quick", "--max-steps", 100, "--gen-lr", 2e-5]),
}
TITLES = ("titles", "smollm2")  # the corpora of titles: judged by the title scorers
# name: (corpus half, train-scorer flags). Titles: the quick scorer preset; reviews: tasks.py's smaller reviews one.
SCORERS = {
    "sentiment-reward": ("even", ["--preset", "quick", "--kind", "style", "--label", "sentiment"]),
    "sentiment-judge": ("odd", ["--preset", "quick", "--kind", "style", "--label", "sentiment"]),
    "click-reward": ("even", ["--preset", "quick", "--kind", "click"]),
    "click-judge": ("odd", ["--preset", "quick", "--kind", "click"]),
    "review-click-reward": ("even", ["--preset", "reviews", "--kind", "click", "--max-length", 64, "--max-steps", 300]),
    "review-click-judge": ("odd", ["--preset", "reviews", "--kind", "click", "--max-length", 64, "--max-steps", 300]),
}
FRONTIER = ("mle", "realism", *REMEDIES)  # the runs swept over temperature (the titles frontier)
TITLE_SCORERS = [name for name in SCORERS if not name.startswith("review-")]
RUN_LOGS = ["config.json", "metrics.jsonl", "samples.jsonl", "summary.json"]
SAME_SCORER = ("steps", "valid_loss", "test_loss")  # summary.json entries that tell two trained scorers apart

FULL = dict(pretrain=[], adversarial=[], scorer=[],
            n=1000, temperatures=[0.8, 1.0], variance=[], sweep="0.5:1.5:0.1", sweep_n=2000, seeds="0,1,2")
SMOKE = dict(pretrain=["--preset", "quick", "--generator", "scratch:gpt2-tiny", "--tokenizer", "corpus:300",
                       "--max-steps", 8, "--eval-every", 4, "--batch-size", 16],
             adversarial=["--preset", "quick", "--discriminator", "scratch:bert-tiny", "--max-steps", 2,
                          "--disc-warmup", 1, "--prompts-per-step", 4, "--k", 2, "--eval-samples", 8,
                          "--checkpoint-every", 1, "--log-samples-every", 1],
             scorer=["--model", "scratch:bert-tiny", "--max-steps", 4, "--eval-every", 2, "--max-length", 32],
             n=24, temperatures=[1.0], variance=["--batches", 2, "--prompts", 2, "--k", 2, "--ema-warmup", 1],
             sweep="0.5,1.0,1.5", sweep_n=24, seeds="0", settings="realism,style3-click1,reviews-dtarget,smollm2-style3")


def scorers(root: Path, logs: Path, settings: dict, names: list, log: Path) -> dict:
    """The reward and judge scorers `names` -> {name: folder}; their scorer.json and summary.json copied to the logs."""
    halves = dict(zip(("even", "odd"), product_halves(root)))
    folders = {}
    for name in names:
        half, flags = SCORERS[name]
        folder = root / f"scorer-{name}"
        if not (folder / "summary.json").is_file():
            advgen("train-scorer", *flags, "--corpus", halves[half], *settings["scorer"], "--out", folder, log=log)
        (logs / "scorers" / name).mkdir(parents=True, exist_ok=True)
        for file in ("scorer.json", "summary.json"):
            shutil.copy2(folder / file, logs / "scorers" / name / file)
        folders[name] = folder
    return folders


def judge(texts: Path, report: Path, judges: dict, log: Path, field: str = "title") -> None:
    """A samples file (or real titles) -> its report: BLEU against the test split's texts of `field`, Self-BLEU,
    distinct-n and, for titles, the verdict of every title scorer (written atomically, so an older report stays until
    the new one is complete)."""
    scorers = [arg for name in TITLE_SCORERS for arg in ("--scorer", judges[name])] if field == "title" else []
    advgen("evaluate", texts, "--references", "test", "--field", field, "--pairing", "unpaired",
           "--metrics", "bleu,self-bleu,distinct", *scorers, "--out", report, log=log)


def rejudge(logs: Path, judges: dict, log: Path) -> None:
    """Every committed report judged by the scorers in `judges`, whose fingerprints LOGS/judges.json records. A scorer
    trained again after its work folder was lost differs in the last bits (float arithmetic differs between
    machines) and is another judge: every report is then measured again from its committed samples (or titles),
    so no table mixes two instances of a judge. Reports of unrecorded judges are measured again too."""
    current = {name: {key: json.loads((judges[name] / "summary.json").read_text()).get(key) for key in SAME_SCORER}
               for name in TITLE_SCORERS}
    record = logs / "judges.json"
    if record.is_file() and json.loads(record.read_text()) == current:
        return
    for report in sorted(r for corpus in TITLES for r in logs.glob(f"{corpus}-*/eval-T*.json")):
        judge(report.with_name(report.name.replace("eval-", "samples-") + "l"), report, judges, log)
    if (logs / "data-valid.json").is_file():
        judge(logs / "data-valid-titles.jsonl", logs / "data-valid.json", judges, log)
    record.write_text(json.dumps(current, indent=1) + "\n")


def measure(run: Path, target: Path, judges: dict, settings: dict, log: Path) -> None:
    """The run's logs, its samples at each temperature, prompted by the test split, and their report (titles: with
    every scorer). Logs already there are kept: a checkpoint trained again and found equal to the committed one
    (common.mle_instance) leaves the first training's logs, wall times included, as they were."""
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_LOGS:
        if not (target / name).is_file():
            shutil.copy2(run / name, target / name)
    for t in settings["temperatures"]:
        samples, report = target / f"samples-T{t:.2f}.jsonl", target / f"eval-T{t:.2f}.json"
        if not samples.is_file():
            advgen("sample", run, "--n", settings["n"], "--temperature", t, "--out", samples, log=log)
        if not report.is_file():
            judge(samples, report, judges, log, "title" if corpus_of(target.name) in TITLES else "review")


def data_reference(run: Path, logs: Path, judges: dict, settings: dict, log: Path) -> None:
    """Real titles judged as if they were samples: the first N validation titles (products neither the generators'
    test prompts nor their training came from), each against its own rating's sentiment, BLEU against the test
    titles -> LOGS/data-valid.json: what the scorers and the metrics say of real titles."""
    report = logs / "data-valid.json"
    if report.is_file():
        return
    from advgen import data, runs

    rows = data.load_splits(runs.read_config(run)["pretrain"])["valid"][:settings["n"]]
    titles = logs / "data-valid-titles.jsonl"
    titles.write_text("".join(json.dumps({"text": str(r["title"]).strip(), "rating": r["rating"]}) + "\n" for r in rows))
    judge(titles, report, judges, log)


def sweep(run: Path, target: Path, settings: dict, log: Path) -> None:
    """The temperature sweep of a run (BLEU and Self-BLEU against the test titles, Treebank words) -> TARGET/sweep.csv."""
    if (target / "sweep.csv").is_file():
        return
    out = run.parent / "sweeps" / run.name
    advgen("sweep", run, "--temperatures", settings["sweep"], "--n", settings["sweep_n"], "--tokenize", "treebank",
           "--no-realism", "--resume", "--out", out, log=log)
    shutil.copy2(out / "sweep.csv", target / "sweep.csv")


def baseline_variance(run: Path, target: Path, seed: int, settings: dict, log: Path) -> None:
    """benchmarks/baseline_variance.py on a run's generator and discriminator: the variance of the policy gradient
    under each baseline on the same rollouts -> its JSON line in TARGET/baseline-variance.json."""
    out = target / "baseline-variance.json"
    if out.is_file():
        return
    command = [sys.executable, str(REPO / "benchmarks" / "baseline_variance.py"), "--run", str(run), "--seed", str(seed),
               *map(str, settings["variance"])]
    print("$ " + " ".join(command[1:]), flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(command) + "\n" + done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"experiments: baseline_variance.py failed with exit status {done.returncode}; see {log}")
    out.write_text(json.dumps(json.loads(done.stdout.strip().splitlines()[-1]), indent=1) + "\n")


def complete(target: Path, settings: dict) -> bool:
    """Every log of a run is in TARGET: for the titles' MLE, realism and remedy runs their sweep.csv too, and for
    a titles realism run its baseline-variance report."""
    names = RUN_LOGS + [f"eval-T{t:.2f}.json" for t in settings["temperatures"]]
    corpus, setting = target.name.rsplit("-s", 1)[0].split("-", 1)
    titles = corpus == "titles"  # the from-scratch titles generator: the one swept (a SmolLM2 sweep costs hours)
    names += ["sweep.csv"] * (titles and setting in FRONTIER) + ["baseline-variance.json"] * (titles and setting == "realism")
    return all((target / name).is_file() for name in names)


def corpus_of(name: str) -> str:
    """The corpus (TASKS) of a setting or a run name: reviews-dtarget -> reviews, smollm2-style3-s0 -> smollm2, and
    every other setting -> titles."""
    head = name.split("-", 1)[0]
    return head if head in TASKS else "titles"


def run_name(corpus: str, setting: str, label: str) -> str:
    """titles-style1-s0, reviews-dtarget-s0 (the setting reviews-dtarget), titles-mle-s0r1."""
    return f"{corpus}-{setting.removeprefix(corpus + '-')}-s{label}"


def done(corpus: str, seed: int, chosen: list, logs: Path, settings: dict) -> bool:
    """The seed's latest MLE instance of `corpus` in `logs` (the seed itself or a retrain's label <seed>r<k>) and each
    chosen setting's run started from it are complete."""
    labels = [path.name.rsplit("-s", 1)[1] for path in common.instances(logs, f"{corpus}-mle", seed)]
    label = max(labels, key=common.seed_order, default=None)
    return label is not None and all(complete(logs / run_name(corpus, s, label), settings) for s in ["mle", *chosen])


def chain(corpus: str, seed: int, wanted: list, work: Path, logs: Path, judges: dict, settings: dict, log: Path) -> None:
    """One seed's MLE generator of `corpus` (TASKS) and the adversarial runs of the `wanted` settings started from it,
    each measured (the titles' frontier runs swept too). A lost MLE checkpoint is trained again; on another machine it
    differs, and is logged with the runs started from it under a new seed label (common.mle_instance, as run.py
    does). Every wanted setting runs from this MLE generator, also one logged from an earlier instance of the seed:
    a table reads each seed's latest instance that all its rows have, so its rows share their MLE generator."""
    mle_folder = work / f"{corpus}-mle-s{seed}"
    train("pretrain", mle_folder, [*TASKS[corpus]["pretrain"], *settings["pretrain"], "--seed", seed], log)
    label = common.mle_instance(logs, f"{corpus}-mle", seed, json.loads((mle_folder / "summary.json").read_text()))
    titles = corpus == "titles"
    measure(mle_folder, logs / run_name(corpus, "mle", label), judges, settings, log)
    if titles:
        sweep(mle_folder, logs / run_name(corpus, "mle", label), settings, log)
    rewards = {"style": ["--style-scorer", judges["sentiment-reward"]], "click": ["--click-scorer", judges["click-reward"]]}
    for setting in [s for s in wanted if not complete(logs / run_name(corpus, s, label), settings)]:
        name = run_name(corpus, setting, label)
        flags = [str(f) for f in SETTINGS[setting]]
        scorer_flags = [arg for kind in ("style", "click") if f"--w-{kind}" in flags for arg in rewards[kind]]
        train("adversarial", work / name, [*TASKS[corpus]["adversarial"], *settings["adversarial"], "--init",
                                           mle_folder, "--seed", seed, *flags, *scorer_flags], log)
        measure(work / name, logs / name, judges, settings, log)
        if titles and setting in FRONTIER:
            sweep(work / name, logs / name, settings, log)
        if titles and setting == "realism":
            baseline_variance(work / name, logs / name, seed, settings, log)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, run in this order [0,1,2; smoke: 0]")
    parser.add_argument("--settings", default=None, help=f"comma-separated, from {', '.join(SETTINGS)} [all]")
    parser.add_argument("--root", default=None, help="work folder for checkpoints [runs/paper-ecommerce]")
    parser.add_argument("--logs", default=None, help="committed logs [paper/runs/ecommerce; smoke: ROOT/runs/ecommerce]")
    parser.add_argument("--smoke", action="store_true", help="the whole chain at tiny sizes")
    args = parser.parse_args(argv)
    if args.smoke and not args.root:
        parser.error("--smoke needs --root (it never writes into paper/)")
    settings = SMOKE if args.smoke else FULL
    chosen = (args.settings or settings.get("settings") or ",".join(SETTINGS)).split(",")
    if any(s not in SETTINGS for s in chosen):
        parser.error(f"--settings: choose from {', '.join(SETTINGS)}")
    work = Path(args.root or REPO / "runs" / "paper-ecommerce").resolve()
    logs = Path(args.logs or (work / "runs" / "ecommerce" if args.smoke else REPO / "paper" / "runs" / "ecommerce")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    log = work / "experiments.log"
    (logs / "settings.json").write_text(json.dumps({"settings": SETTINGS, "groups": GROUPS, "tasks": TASKS,
                                                    "overrides": {k: settings[k] for k in ("pretrain", "adversarial")},
                                                    "temperatures": settings["temperatures"]},
                                                   indent=1, default=str) + "\n")
    judges = scorers(work, logs, settings, TITLE_SCORERS, log)
    rejudge(logs, judges, log)
    for seed in [int(s) for s in (args.seeds or settings["seeds"]).split(",")]:
        for corpus in TASKS:
            wanted = [s for s in chosen if corpus_of(s) == corpus]
            if not wanted:
                continue
            if done(corpus, seed, wanted, logs, settings):
                print(f"seed {seed}: complete in {logs}, skipped ({corpus})", flush=True)
                continue
            chain(corpus, seed, wanted, work, logs, judges, settings, log)
            print(f"seed {seed}: logs in {logs} ({corpus})", flush=True)
    first = logs / f"titles-mle-s{(args.seeds or settings['seeds']).split(',')[0]}"
    if (first / "config.json").is_file():
        data_reference(first, logs, judges, settings, log)  # the splits are the same for every seed
    # The judges table's scorers of reviews: no run uses them, so only their logs are needed (trained once).
    scorers(work, logs, settings, [name for name in SCORERS if name not in TITLE_SCORERS
                                   and not (logs / "scorers" / name / "summary.json").is_file()], log)
    if args.smoke:  # the e-commerce figures and tables of the smoke logs
        subprocess.check_call([sys.executable, str(REPO / "experiments" / "paper.py"), "--runs", str(logs.parent),
                               "--out", str(work / "paper")], cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
