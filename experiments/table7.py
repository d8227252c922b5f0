"""Table 7: steering product titles by reward. For each reward setting (realism only; + style, the sentiment
scorer's P(the prompt's own sentiment); + click; both) and for the MLE generator the runs start from, at each
sampling temperature: what the judges (scorers trained on the other half of the products) say of the samples,
what the reward scorers say, quality against the test titles and diversity. Mean ± standard deviation over seeds.
"""
from pathlib import Path

import numpy as np

import common

JUDGE, REWARD = "scorer-sentiment-judge", "scorer-sentiment-reward"
COLUMNS = [(f"style-accuracy/{JUDGE}", "judge: sentiment accuracy"),
           (f"style-balanced-accuracy/{JUDGE}", "judge: balanced accuracy"),
           (f"style-balanced-accuracy/{REWARD}", "reward scorer: balanced accuracy"),
           ("click/scorer-click-judge", "judge: P(click)"), ("click/scorer-click-reward", "reward scorer: P(click)"),
           ("bleu-4", "BLEU-4"), ("self-bleu-4", "Self-BLEU-4"), ("distinct-2", "distinct-2"),
           ("words", "words per title"), ("top-share", "share of the commonest title")]
CLASSES = ("negative", "neutral", "positive")
SENTIMENT = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}  # of a prompt's rating


def prompt_mix(runs: Path) -> str:
    """The sentiments the prompts state (the test split's ratings, the same for every run), from an MLE run's samples."""
    samples = sorted(runs.glob("titles-mle-s*/samples-T*.jsonl"))
    if not samples:
        return ""
    ratings = [r["condition"]["rating"] for r in common.read_jsonl(samples[0])]
    sentiments = [SENTIMENT[r] for r in ratings]
    return (" Prompts: " + ", ".join(f"{sentiments.count(name) / len(sentiments):.1%} {name}" for name in CLASSES)
            + f" ({len(ratings)} test ratings).")


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    found = common.evaluations(args.runs, ["mle", *common.group(args.runs, "steering")])
    mle = common.evaluations(args.runs, ["mle"], every_instance=True).get("mle", {})  # each run's own MLE
    rows = []
    for model, by_seed in found.items():
        for t in sorted({t for points in by_seed.values() for t in points}):
            seeds = [s for s in by_seed if t in by_seed[s]]
            cells = [common.fmt(*common.mean_std([by_seed[s][t][key] for s in seeds])) for key, _ in COLUMNS]
            per_class = " / ".join(f"{common.mean_std([by_seed[s][t].get(f'style-accuracy/{JUDGE}/{c}', np.nan) for s in seeds])[0]:.2f}"
                                   for c in CLASSES)
            # the judge's click probability relative to the MLE run of the same seed, at the same temperature
            gain = [by_seed[s][t]["click/scorer-click-judge"] / mle[s][t]["click/scorer-click-judge"] - 1
                    for s in seeds if s in mle and t in mle[s]]
            gain_cell = "(reference)" if model == "mle" else common.fmt(*common.mean_std(np.array(gain) * 100), 1) + " %"
            rows.append([model, len(seeds), f"{t:.1f}", *cells[:2], per_class, cells[2], cells[3], gain_cell, *cells[4:]])
    data = Path(args.runs) / "data-valid.json"
    if data.is_file():  # real validation titles, judged as samples
        values = common.judged(data, Path(args.runs) / "data-valid-titles.jsonl")
        cells = [common.fmt(values.get(key, float("nan"))) for key, _ in COLUMNS]
        per_class = " / ".join(f"{values[f'style-accuracy/{JUDGE}/{c}']:.2f}" for c in CLASSES)
        rows.append(["validation titles (real data)", "–", "–", *cells[:2], per_class, cells[2], cells[3], "–", *cells[4:]])
    header = ["setting", "seeds", "T", *[name for _, name in COLUMNS[:2]], "judge: accuracy on negative / neutral / "
              "positive prompts", COLUMNS[2][1], COLUMNS[3][1], "judge: P(click) vs MLE", *[name for _, name in COLUMNS[4:]]]
    note = ("Sentiment accuracy: the share of samples a scorer assigns to the sentiment of the rating in their prompt "
            "(1-2 negative, 3 neutral, 4-5 positive); balanced: its mean over the three sentiments, which prompts skewed to "
            "positive cannot lift. Samples: prompted by the test split's ratings, in order. BLEU-4 "
            "against all test titles; Self-BLEU-4 against the other samples; words split on whitespace."
            + prompt_mix(Path(args.runs)))
    print(common.write_table(args.out, "table7", header, rows, note))


if __name__ == "__main__":
    main()
