"""Figure 1: the quality-diversity frontier on COCO captions over the temperature sweep, MLE against adversarial.

Panels: BLEU-4 against Self-BLEU-4, BLEU-5 against Self-BLEU-5 (Texygen's protocol at every temperature, BLEU
against the test captions), BLEU-4 against the held-out train captions (the test captions are of other scenes than
the train captions, table10), and the test NLL per token at each temperature against Self-BLEU-4. One curve per
model: the mean over seeds at each temperature, with bars of one standard deviation in both axes where there are several seeds. Texygen's published
points and the real data (train captions scored as samples) are marked. Lower right is better in the BLEU panels:
as close to the test captions, more diverse.
"""
import json
from pathlib import Path

import common
from table1 import TEXYGEN

PANELS = [("self-bleu-4", "bleu-4", "test", "BLEU-4 (test captions)", 2, 6),
          ("self-bleu-5", "bleu-5", "test", "BLEU-5 (test captions)", 3, 7),
          ("self-bleu-4", "bleu-4", "held-out", "BLEU-4 (held-out train captions)", None, None),
          ("self-bleu-4", "nll", "test", "test NLL per token at the temperature", None, None)]
DATA = {"test": "data-texygen.json", "held-out": "data-held-out.json"}  # the train captions scored as samples


def main():
    args = common.arguments(__doc__.split("\n")[0])
    runs = Path(args.runs)
    plt = common.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.6))
    for ax, (x, y, references, label, texygen_y, texygen_x) in zip(axes.flat, PANELS):
        for model, by_seed in common.sweeps(runs, references=references).items():
            common.plot_sweeps(ax, by_seed, x, y, common.COLORS[model], common.MODELS[model])
        if texygen_y is not None:
            for name, values in TEXYGEN.items():
                ax.scatter(values[texygen_x], values[texygen_y], marker="x", color="0.3", zorder=3)
                ax.annotate(name, (values[texygen_x], values[texygen_y]), textcoords="offset points",
                            xytext=(4, -9), fontsize=7, color="0.3")
        if y != "nll" and (runs / DATA[references]).is_file():
            data = json.loads((runs / DATA[references]).read_text())["metrics"]
            ax.scatter(data[x], data[y], marker="*", s=120, color="black", zorder=3, label="train captions (data)")
        ax.set_xlabel(x.replace("self-bleu", "Self-BLEU") + " (lower: more diverse)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    print(common.finish(fig, axes.flat, "COCO captions, temperature sweep 0.5-1.5, 10,000 samples per point (labels: temperature)", args.out, "figure1"))


if __name__ == "__main__":
    main()
