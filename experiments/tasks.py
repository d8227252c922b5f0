"""The e-commerce tasks end to end on the embedded corpus, at the quick size (issue: the tasks as users run them).

For each task (a review title from its review; a review from a department and a rating; a product's class tag
from its review):
    advgen pretrain --preset quick <task flags>                      (the quick generator, on this task)
    advgen sample RUN --inputs docs/examples/new-items.jsonl         (hand-written items not in the corpus)
    advgen sample RUN --inputs <a malformed copy>                    (must exit 2 with one line, writing nothing)
    advgen evaluate RUN --n N                                        (paired metrics; tags for the class task)
    advgen evaluate smollm2-135m --task-from RUN --n N               (the packaged SmolLM2, zero-shot, same prompts)
For the class task, a class scorer of reviews (`advgen train-scorer --label class --field review`) and its majority and
bag-of-words baselines, all three measured on the generators' test items (`classifier_baselines`).
Best-of-n reranking on the review task: a department scorer of reviews trained on the even products reranks, one
trained on the odd products judges; best-of-1, 4 and 16 on the same test prompts.

Every step's output goes under --root (default runs/tasks) and a finished step is skipped, so a killed run
resumes. At the end, the results as Markdown tables on stdout and in ROOT/tasks.md.

    python experiments/tasks.py [--root runs/tasks] [--n 300]
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ITEMS = REPO / "docs" / "examples" / "new-items.jsonl"
TASKS = {
    "title-from-review": ["--source", "review", "--field", "title"],
    "review-from-department-rating": ["--field", "review", "--condition", "department,rating", "--max-target-tokens", "48"],
    "class-from-review": ["--source", "review", "--field", "class", "--max-target-tokens", "6"],
}
# Scorers of reviews, smaller than the `reviews` preset so that each fits a few minutes on 2 CPU cores.
SCORER = ["--preset", "reviews", "--max-length", "64", "--max-steps", "300", "--eval-every", "100"]


def advgen(*args, out: Path, log: Path, expect: int = 0) -> subprocess.CompletedProcess:
    """One advgen command, skipped when `out` exists; its output appended to `log`."""
    if out.exists():
        return None
    command = [sys.executable, "-m", "advgen", *map(str, args)]
    print("$ advgen " + " ".join(map(str, args)), flush=True)
    started = time.time()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(command) + "\n" + result.stdout + result.stderr)
    if result.returncode != expect:
        sys.exit(f"tasks: `advgen {args[0]}` exited {result.returncode}, not {expect}; see {log}")
    print(f"  done in {time.time() - started:.0f} s", flush=True)
    return result


def product_halves(root: Path) -> tuple:
    """The embedded corpus split by product id parity: scorers trained on disjoint products."""
    from advgen import data

    halves = root / "products-even.jsonl", root / "products-odd.jsonl"
    if not all(p.exists() for p in halves):
        rows = data.load_corpus(None)
        for parity, path in enumerate(halves):
            path.write_text("".join(json.dumps(r) + "\n" for r in rows if int(r["product_id"]) % 2 == parity))
    return halves


def classifier_baselines(root: Path, run: Path, n: int) -> Path:
    """The class scorer, the majority class and bag-of-words logistic regression (train-scorer's baselines, refitted
    on the same train split) on the class generator's first n test items, so that every row of the tags table is
    measured on the same reviews; also on the whole test split. -> ROOT/class-baselines.json."""
    out = root / "class-baselines.json"
    if out.exists():
        return out
    import numpy as np

    from advgen import data, runs, scorers, train_scorer
    from advgen.config import ScorerConfig

    scorer = scorers.load_scorer(root / "scorer-class")
    cfg = ScorerConfig(**scorer.info["config"])
    splits, names = train_scorer.labelled_splits(data.load_corpus(cfg.corpus), cfg)
    generator_items = data.load_splits(runs.read_config(run)["pretrain"])["test"][:n]
    if [str(r["review"]).strip() for r in generator_items] != splits["test"][0][:n]:
        sys.exit("tasks: the class scorer's test split is not the generator's: the baselines would score other items")
    report = {}
    for name, count in ((f"first-{n}", n), ("test", None)):
        test = tuple(v[:count] for v in splits["test"])
        probs = scorers.probabilities(scorer, list(test[0])).numpy()
        report[name] = {"items": len(test[0]), "scorer": train_scorer.quality("style", probs, np.array(test[1]), None),
                        **train_scorer.bag_of_words("style", {**splits, "test": test}, len(names))}
        for model in report[name].values():
            if isinstance(model, dict):
                model.pop("confusion", None)
    out.write_text(json.dumps(report, indent=1, default=lambda v: v.item()) + "\n")  # numpy scalars as numbers
    return out


def metrics_of(path: Path) -> dict:
    return json.loads(path.read_text())["metrics"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(REPO / "runs" / "tasks"))
    parser.add_argument("--n", type=int, default=300, help="test prompts per evaluation")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "tasks.log"
    malformed = root / "malformed-items.jsonl"
    malformed.write_text(ITEMS.read_text() + '{"sku": "NEW-005", "rating": 3}\n')  # no department, no review
    lines = []
    for task, flags in TASKS.items():
        run = root / task
        advgen("pretrain", "--preset", "quick", *flags, "--out", run, out=run / "summary.json", log=log)
        new = root / f"{task}-new-items.jsonl"
        advgen("sample", run, "--inputs", ITEMS, "--num-samples", 2, "--out", new, out=new, log=log)
        bad = subprocess.run([sys.executable, "-m", "advgen", "sample", str(run), "--inputs", str(malformed), "--out",
                              str(root / "never.jsonl")], cwd=REPO, capture_output=True, text=True)
        assert bad.returncode == 2 and not (root / "never.jsonl").exists(), bad.stderr
        lines.append(f"`{task}` on a malformed file: exit {bad.returncode}, `{bad.stderr.strip()}`")
        metric = ["--metrics", "tags", "--tag-samples", 5] if task == "class-from-review" else \
            ["--metrics", "paired,self-bleu,distinct"]
        for model, name in ((run, "quick"), ("smollm2-135m", "smollm2")):
            task_from = ["--task-from", run] if name == "smollm2" else []
            report = root / f"{task}-{name}.json"
            advgen("evaluate", model, *task_from, "--n", args.n, *metric, "--out", report, out=report, log=log)
    scorer_class = root / "scorer-class"
    advgen("train-scorer", *SCORER, "--kind", "style", "--label", "class", "--out", scorer_class,
           out=scorer_class / "summary.json", log=log)
    classifier_baselines(root, root / "class-from-review", args.n)
    even, odd = product_halves(root)
    for name, corpus in (("rerank", even), ("judge", odd)):
        folder = root / f"scorer-department-{name}"
        advgen("train-scorer", *SCORER, "--kind", "style", "--label", "department", "--corpus", corpus, "--out", folder,
               out=folder / "summary.json", log=log)
    reviews = root / "review-from-department-rating"
    for best in (1, 4, 16):
        samples = root / f"best-of-{best}.jsonl"
        rerank = ["--best-of", best, "--rerank-by", root / "scorer-department-rerank"] if best > 1 else []
        advgen("sample", reviews, "--n", args.n, *rerank, "--out", samples, out=samples, log=log)
        report = root / f"best-of-{best}.json"
        advgen("evaluate", samples, "--references", "test", "--field", "review", "--metrics", "self-bleu,distinct",
               "--scorer", root / "scorer-department-judge", "--scorer", root / "scorer-department-rerank",
               "--pairing", "unpaired", "--out", report, out=report, log=log)
    print(report_tables(root, lines))


def report_tables(root: Path, lines: list) -> str:
    out = ["## New items and a malformed file", ""] + [f"- {line}" for line in lines] + [""]
    out += ["## Paired metrics on the test split: the quick run against zero-shot SmolLM2-135M", "",
            "| task | model | sacrebleu | sentence-bleu | chrF | ROUGE-L | exact match | Self-BLEU-4 | distinct-2 |",
            "|---|---|---|---|---|---|---|---|---|"]
    for task in list(TASKS)[:2]:
        for name in ("quick", "smollm2"):
            m = metrics_of(root / f"{task}-{name}.json")
            out.append(f"| {task} | {name} | " + " | ".join(f"{m[k]:.2f}" for k in
                       ("sacrebleu", "sentence-bleu", "chrf", "rouge-l", "exact-match")) +
                       f" | {m['self-bleu-4']:.3f} | {m['distinct-2']:.3f} |")
    baselines = json.loads((root / "class-baselines.json").read_text())
    items = next(iter(baselines.values()))["items"]
    out += ["", f"## Class tags from reviews (the first {items} test items; generators: 5 samples per item)", "",
            "| model | accuracy | precision@1 | precision@3 | recall@3 | recall@5 |", "|---|---|---|---|---|---|"]
    rank = ("precision@1", "precision@3", "recall@3", "recall@5")
    for name in ("quick", "smollm2"):
        m = metrics_of(root / f"class-from-review-{name}.json")
        out.append(f"| generator: {name} | {m['tag-accuracy']:.3f} | " + " | ".join(f"{m[k]:.3f}" for k in rank) + " |")
    for split, scores in baselines.items():
        for name in ("majority", "bow_logreg", "scorer"):
            m = scores[name]
            out.append(f"| classifier: {name} ({scores['items']} items) | {m['accuracy']:.3f} | "
                       + " | ".join(f"{m[k]:.3f}" for k in rank) + " |")
    out += ["", "## Best-of-n reranking (reviews, department: rerank scorer on even products, judge on odd)", "",
            "| n | judge: share with the prompt's department | judge: mean P(department) | reranker's share | Self-BLEU-4 | distinct-2 |",
            "|---|---|---|---|---|---|"]
    for best in (1, 4, 16):
        m = metrics_of(root / f"best-of-{best}.json")
        out.append(f"| {best} | {m['style-accuracy/scorer-department-judge']:.3f} | {m['style-p/scorer-department-judge']:.3f} | "
                   f"{m['style-accuracy/scorer-department-rerank']:.3f} | {m['self-bleu-4']:.3f} | {m['distinct-2']:.3f} |")
    text = "\n".join(out) + "\n"
    (root / "tasks.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
