"""Figure 1: the quality-diversity frontier on COCO captions over the temperature sweep, MLE against adversarial.

Panels: BLEU-4 against Self-BLEU-4, BLEU-5 against Self-BLEU-5 (Texygen's protocol at every temperature), and the
test NLL per token at each temperature against Self-BLEU-4. One curve per model: the mean over seeds at each
temperature, with bars of one standard deviation in both axes where there are several seeds. Texygen's published
points and the real data (train captions scored as samples) are marked. Lower right is better in the BLEU panels:
as close to the test captions, more diverse.
"""
import json
from pathlib import Path

import common
from table1 import TEXYGEN

PANELS = [("self-bleu-4", "bleu-4", "BLEU-4 (test captions)", 2, 6),
          ("self-bleu-5", "bleu-5", "BLEU-5 (test captions)", 3, 7),
          ("self-bleu-4", "nll", "test NLL per token at the temperature", None, None)]


def main():
    args = common.arguments(__doc__.split("\n")[0])
    runs = Path(args.runs)
    plt = common.pyplot()
    data = json.loads((runs / "data-texygen.json").read_text())["metrics"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (x, y, label, texygen_y, texygen_x) in zip(axes, PANELS):
        for model, by_seed in common.sweeps(runs).items():
            common.plot_sweeps(ax, by_seed, x, y, common.COLORS[model], common.MODELS[model])
        if texygen_y is not None:
            for name, values in TEXYGEN.items():
                ax.scatter(values[texygen_x], values[texygen_y], marker="x", color="0.3", zorder=3)
                ax.annotate(name, (values[texygen_x], values[texygen_y]), textcoords="offset points",
                            xytext=(4, -9), fontsize=7, color="0.3")
            ax.scatter(data[x], data[y], marker="*", s=120, color="black", zorder=3, label="train captions (data)")
        ax.set_xlabel(x.replace("self-bleu", "Self-BLEU") + " (lower: more diverse)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    print(common.finish(fig, axes, "COCO captions, temperature sweep 0.5-1.5, 10,000 samples per point (labels: temperature)", args.out, "figure1"))


if __name__ == "__main__":
    main()
