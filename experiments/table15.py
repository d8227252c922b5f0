"""Table 15: a pretrained generator. The packaged SmolLM2-135M fine-tuned by MLE on the titles task (titles conditioned
on the rating), then trained adversarially with realism only and with the style reward, beside the from-scratch
generator's rows of the same settings: what each training run cost (wall seconds on the machine that ran it), the
test NLL per word (tokenizers differ, so not per token), and at each temperature what the judges say of the samples,
quality against the test titles and diversity (Table 7's columns and samples protocol). table15-dynamics: each
adversarial run's discriminator, realism spread, KL and mixed reward over its first and last 10 steps (Table 14's,
with D(real) and the mixed reward). table15-seeds: each SmolLM2 run on its own, at each temperature. table15-samples:
the first 10 samples at T=1 of every run, unedited. Mean ± standard deviation over seeds (each seed's latest
instance).
"""
import json
from pathlib import Path

import numpy as np

import common
from table7 import CLASSES, JUDGE
from table14 import DYNAMICS, first_to_last

GENERATORS = {"titles": "from scratch (gpt2-mini, 8k corpus tokenizer)", "smollm2": "SmolLM2-135M (pretrained)"}
SETTINGS = ("mle", "realism", "style3")  # smollm2-<setting>-s<seed> beside titles-<setting>-s<seed>
COLUMNS = [(f"style-accuracy/{JUDGE}", "judge: sentiment accuracy"),
           (f"style-balanced-accuracy/{JUDGE}", "judge: balanced accuracy"),
           *[(f"style-accuracy/{JUDGE}/{c}", f"judge: accuracy on {c} prompts") for c in CLASSES],
           ("click/scorer-click-judge", "judge: P(click)"), ("bleu-4", "BLEU-4"), ("self-bleu-4", "Self-BLEU-4"),
           ("distinct-2", "distinct-2"), ("words", "words per title"), ("top-share", "share of the commonest title")]
STEPS = [*DYNAMICS[:1], ("disc/d_real", "D(real)"), *DYNAMICS[1:], ("reward/total_mean", "mixed reward")]
SEED_COLUMNS = [c for c in COLUMNS if c[0].startswith(f"style-balanced-accuracy/{JUDGE}")  # table15-seeds: the judge
                or c[0].startswith(f"style-accuracy/{JUDGE}/") or c[0] in ("self-bleu-4", "words")]
EXAMPLES = 10


def seed_rows(found: dict, judged: dict) -> list:
    """Each run on its own, at each temperature: its cost, its discriminator over the last 10 steps, what the judge
    says of its samples and their commonest title."""
    rows = []
    for setting, by_seed in found.items():
        for seed, run in by_seed.items():
            wall = json.loads((run / "summary.json").read_text())["wall_seconds"]
            ends = common.window_means(common.read_jsonl(run / "metrics.jsonl"), ["disc/accuracy", "reward/total_mean"])
            trained = ["–", "–"] if setting == "mle" else [  # MLE: no adversarial steps
                common.fmt(ends["last"][0]), f"{common.fmt(ends['first'][1], digits=1)} -> {common.fmt(ends['last'][1], digits=1)}"]
            for t, values in sorted(judged.get(setting, {}).get(seed, {}).items()):
                rows.append([setting, run.name, f"{wall:.0f}", *trained, f"{t:.1f}",
                             *[common.fmt(values.get(key, np.nan)) for key, _ in SEED_COLUMNS],
                             f"{values['top-text']!r} ({values['top-share']:.1%})"])
    return rows


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    runs = Path(args.runs)
    rows, examples, dynamics, seeds = [], [], [], []
    for bench, generator in GENERATORS.items():
        found = common.runs_by_model(runs, list(SETTINGS), latest=True, bench=bench,
                                     needs=("summary.json", "eval-T1.00.json"))  # measured to the end (T=1 is last)
        judged = common.evaluations(runs, list(found), bench=bench)
        for setting, by_seed in found.items():
            summaries = [json.loads((run / "summary.json").read_text()) for run in by_seed.values()]
            cost = common.fmt(*common.mean_std([s["wall_seconds"] for s in summaries]), 0)
            nll = common.fmt(*common.mean_std([s.get("test_nll_per_word", float("nan")) for s in summaries]), 2)
            by_t = judged.get(setting, {})
            for t in sorted({t for points in by_t.values() for t in points}):
                values = [points[t] for points in by_t.values() if t in points]
                rows.append([generator, setting, len(values), cost, nll, f"{t:.1f}",
                             *[common.fmt(*common.mean_std([v.get(key, np.nan) for v in values])) for key, _ in COLUMNS]])
            if setting != "mle":
                dynamics.append([generator, setting, len(by_seed), *first_to_last(by_seed, STEPS)])
            run = next(iter(by_seed.values()))  # the first seed's samples
            for sample in common.read_jsonl(run / "samples-T1.00.jsonl")[:EXAMPLES]:
                examples.append([generator, setting, run.name, sample["condition"]["rating"],
                                 " ⏎ ".join(sample["text"].replace("|", "\\|").splitlines())])
        if bench == "smollm2":
            seeds = seed_rows(found, judged)
    header = ["generator", "setting", "seeds", "training wall s", "test NLL per word", "T",
              *[name for _, name in COLUMNS]]
    note = ("Training wall s: the run's own training (the adversarial runs start from their MLE run, whose cost is on "
            "its row), on 2 CPU cores. Samples: 1,000 per temperature, prompted by the test split's ratings; the judges "
            "and metrics as in Table 7 (accuracy on negative prompts: the share of the samples prompted by a rating of "
            "1-2 that the judge calls negative; likewise neutral for 3, positive for 4-5).")
    print(common.write_table(args.out, "table15", header, rows, note))
    print(common.write_table(args.out, "table15-dynamics", ["generator", "setting", "seeds",
                                                            *[f"{name}, first -> last 10 steps" for _, name in STEPS]],
                             dynamics, "KL: the sampled estimate per sequence (nats). Mixed reward: the weighted sum "
                             "of the rewards, each divided by its running spread (so it rises as a spread shrinks)."))
    print(common.write_table(args.out, "table15-seeds", ["setting", "run", "training wall s",
                                                         "discriminator accuracy, last 10 steps",
                                                         "mixed reward, first -> last 10 steps", "T",
                                                         *[name for _, name in SEED_COLUMNS], "the commonest title"],
                             seeds, "Each SmolLM2 run of Table 15 on its own; its 1,000 titles per temperature."))
    print(common.write_table(args.out, "table15-samples", ["generator", "setting", "run", "prompt's rating",
                                                           "sample (T=1, unedited; ⏎ a line break)"], examples))


if __name__ == "__main__":
    main()
