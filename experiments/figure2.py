"""Figure 2: training dynamics of the adversarial runs on COCO captions (the plain run and each remedy), from their
metrics.jsonl.

Per generator step: D(real) (dashed) and D(fake) (solid), the discriminator's mean P(real) on the real and generated
texts of its step, the discriminator's accuracy, the mixed reward, the KL divergence to the init generator and the
policy's entropy (per sequence), and the batch's distinct-2. One colour per model: the mean over its seeds, with the
seeds' range shaded; each curve is a moving average over `WINDOW` steps.
"""
from pathlib import Path

import numpy as np

import common

WINDOW = 10
PANELS = [("D(real) dashed, D(fake) solid", [("disc/d_real", "--"), ("disc/d_fake", "-")]),
          ("discriminator accuracy", [("disc/accuracy", "-")]), ("mixed reward", [("reward/total_mean", "-")]),
          ("KL to init (nats per sequence)", [("policy/kl", "-")]),
          ("entropy (nats per sequence)", [("policy/entropy", "-")]), ("batch distinct-2", [("charts/distinct2", "-")])]


def smooth(values: np.ndarray) -> np.ndarray:
    window = max(1, min(WINDOW, len(values) // 5))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_curve(ax, steps: dict, key: str, color, style: str, label) -> None:
    """The mean over seeds of one logged quantity, smoothed, with the seeds' range shaded."""
    series = [smooth(np.array([r[key] for r in rows], dtype=float)) for rows in steps.values()]
    length = min(map(len, series)) if series else 0
    if not length:
        return
    stack = np.stack([s[:length] for s in series])
    x = np.arange(length) + (len(next(iter(steps.values()))) - length) + 1  # the window's last step
    ax.plot(x, stack.mean(0), color=color, linestyle=style, label=label)
    if len(stack) > 1:
        ax.fill_between(x, stack.min(0), stack.max(0), alpha=0.2, color=color)


def main():
    args = common.arguments(__doc__.split("\n")[0])
    by_model = {model: {seed: [r for r in common.read_jsonl(run / "metrics.jsonl") if "policy/loss" in r]
                        for seed, run in seeds.items()}
                for model, seeds in common.runs_by_model(Path(args.runs)).items() if model != "mle"}
    plt = common.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for i, (ax, (title, curves)) in enumerate(zip(axes.ravel(), PANELS)):
        for model, steps in by_model.items():
            for j, (key, style) in enumerate(curves):
                label = f"{common.MODELS[model]} ({len(steps)} seed{'s' * (len(steps) > 1)})" if i == 0 and j else None
                plot_curve(ax, steps, key, common.COLORS[model], style, label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(f"COCO captions, adversarial training (realism only); moving average over {WINDOW} steps")
    fig.tight_layout()
    print(common.save_figure(fig, args.out, "figure2"))


if __name__ == "__main__":
    main()
