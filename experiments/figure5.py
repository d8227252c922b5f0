"""Figure 5: the quality-diversity frontier on product titles over the temperature sweep (0.5-1.5, 2,000 samples per
point), the MLE generator against its adversarial runs (realism only, and with each remedy of issue 20): BLEU-4 against the test titles against
Self-BLEU-4, and the test NLL per token at each temperature. The same protocol as Figure 1 on COCO.
"""
from pathlib import Path

import common

PANELS = [("self-bleu-4", "bleu-4", "BLEU-4 (test titles)"), ("self-bleu-4", "nll", "test NLL per token at the temperature")]
MODELS = {"mle": ("advgen MLE", "tab:blue"), "realism": ("advgen adversarial (realism)", "tab:red"),
          **{v: (common.MODELS[v], common.COLORS[v]) for v in ("cold", "mleterm", "dtarget", "dense", "ppo")}}


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    found = common.sweeps(Path(args.runs), list(MODELS), bench="titles", latest=True)
    if not found:
        print(f"figure5: no sweep.csv of {', '.join(MODELS)} runs in {args.runs} yet; not drawn")
        return
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(PANELS), figsize=(10, 4.5))
    for ax, (x, y, label) in zip(axes, PANELS):
        for model, by_seed in found.items():
            common.plot_sweeps(ax, by_seed, x, y, MODELS[model][1], MODELS[model][0])
        ax.set_xlabel("Self-BLEU-4 (lower: more diverse)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    print(common.finish(fig, axes, "Product titles conditioned on the rating, temperature sweep (labels: temperature)", args.out, "figure5"))


if __name__ == "__main__":
    main()
