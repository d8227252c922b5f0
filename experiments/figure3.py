"""Figure 3: steering product titles by reward against diversity. One point per reward setting and sampling
temperature (mean over seeds, bars of one standard deviation), the temperatures of a setting joined, the MLE
generator the runs start from in black, real validation titles judged the same way as a star. Panels: the judge's
balanced sentiment accuracy, the judge's mean P(click) and BLEU-4 against the test titles, each against Self-BLEU-4
(left: more diverse). Upper left is better.
"""
import json
from pathlib import Path

import numpy as np

import common
from table7 import JUDGE

PANELS = [(f"style-balanced-accuracy/{JUDGE}", "judge: balanced sentiment accuracy"),
          ("click/scorer-click-judge", "judge: mean P(click)"), ("bleu-4", "BLEU-4 (test titles)")]


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    found = common.evaluations(args.runs, ["mle", *common.group(args.runs, "steering")])
    data = Path(args.runs) / "data-valid.json"
    data = json.loads(data.read_text())["metrics"] if data.is_file() else None  # real validation titles, judged
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.8))
    colors = plt.get_cmap("tab10")
    for ax, (y, label) in zip(axes, PANELS):
        for i, (model, by_seed) in enumerate(found.items()):
            temps = sorted({t for points in by_seed.values() for t in points})
            stats = {key: np.array([common.mean_std([by_seed[s][t][key] for s in by_seed if t in by_seed[s]])
                                    for t in temps]) for key in ("self-bleu-4", y)}
            color = "black" if model == "mle" else colors(i - 1)
            sx, sy = stats["self-bleu-4"][:, 1], stats[y][:, 1]
            ax.errorbar(stats["self-bleu-4"][:, 0], stats[y][:, 0], xerr=None if np.isnan(sx).all() else sx,
                        yerr=None if np.isnan(sy).all() else sy, marker="s" if model == "mle" else "o", ms=5,
                        capsize=2, color=color, label=f"{model} ({len(by_seed)} seed{'s' * (len(by_seed) > 1)})")
            for t, px, py in zip(temps, stats["self-bleu-4"][:, 0], stats[y][:, 0]):
                ax.annotate(f"{t:g}", (px, py), textcoords="offset points", xytext=(4, 3), fontsize=7, color=color)
        if data is not None:
            ax.scatter(data["self-bleu-4"], data[y], marker="*", s=120, color="black", zorder=3, label="validation titles (data)")
        ax.set_xlabel("Self-BLEU-4 (lower: more diverse)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    print(common.finish(fig, axes, "Product titles conditioned on the rating: reward settings against MLE (labels: temperature)", args.out, "figure3"))


if __name__ == "__main__":
    main()
