"""Figure 4: training curves of the REINFORCE baselines on product titles (realism only): the realism reward (the
discriminator's P(real) of each step's samples), the KL to the MLE model and the spread of the advantages, per
step: the mean over seeds with a band of one standard deviation, smoothed over 5 steps.
"""
from pathlib import Path

import numpy as np

import common
from table8 import KINDS

PANELS = [("reward/realism_mean", "realism reward (P(real) of the samples)"), ("policy/kl", "KL to the MLE model"),
          ("reward/advantage_std", "advantage standard deviation")]


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    runs = Path(args.runs)
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.5))
    found = common.runs_by_model(runs, common.group(runs, "baselines"), latest=True, bench="titles")
    for i, (setting, by_seed) in enumerate(found.items()):
        metrics = [common.read_jsonl(run / "metrics.jsonl") for run in by_seed.values()]
        for ax, (key, label) in zip(axes, PANELS):
            curves = [[r[key] for r in m if key in r] for m in metrics]
            n = min(len(c) for c in curves)
            smooth = np.array([np.convolve(c[:n], np.ones(5) / 5, mode="valid") for c in curves])
            steps = np.arange(len(smooth[0])) + 3
            mean = smooth.mean(0)
            ax.plot(steps, mean, color=f"C{i}", label=f"{KINDS[setting]} ({len(curves)} seed{'s' * (len(curves) > 1)})")
            if len(curves) > 1:
                std = smooth.std(0, ddof=1)
                ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.2)
            ax.set_xlabel("generator step")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    print(common.finish(fig, axes, "Product titles, realism reward only: the REINFORCE baselines (mean over seeds, 5-step moving average)", args.out, "figure4"))


if __name__ == "__main__":
    main()
