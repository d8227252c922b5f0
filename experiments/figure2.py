"""Figure 2: training dynamics of the adversarial runs on COCO captions, from their metrics.jsonl.

Per generator step: D(real) and D(fake) (the discriminator's mean P(real) on the real and generated texts of its
step), the discriminator's accuracy, the mixed reward, the KL divergence to the init generator and the policy's
entropy (per sequence), and the batch's distinct-2. Mean over seeds, with the seeds' range shaded; each curve is a
moving average over `WINDOW` steps.
"""
from pathlib import Path

import numpy as np

import common

WINDOW = 10
PANELS = [(("disc/d_real", "D(real)"), ("disc/d_fake", "D(fake)")), (("disc/accuracy", "discriminator accuracy"),),
          (("reward/total_mean", "mixed reward"),), (("policy/kl", "KL to init (nats per sequence)"),),
          (("policy/entropy", "entropy (nats per sequence)"),), (("charts/distinct2", "batch distinct-2"),)]


def smooth(values: np.ndarray) -> np.ndarray:
    window = max(1, min(WINDOW, len(values) // 5))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def main():
    args = common.arguments(__doc__.split("\n")[0])
    runs = common.runs_by_model(Path(args.runs)).get("adv", {})
    steps = {seed: [r for r in common.read_jsonl(run / "metrics.jsonl") if "policy/loss" in r]
             for seed, run in runs.items()}
    plt = common.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, curves in zip(axes.ravel(), PANELS):
        for (key, label), color in zip(curves, ("tab:red", "tab:blue")):
            series = [smooth(np.array([r[key] for r in rows], dtype=float)) for rows in steps.values()]
            length = min(map(len, series)) if series else 0
            if not length:
                continue
            stack = np.stack([s[:length] for s in series])
            x = np.arange(length) + (len(next(iter(steps.values()))) - length) + 1  # the window's last step
            ax.plot(x, stack.mean(0), color=color if len(curves) > 1 else "tab:red", label=label)
            if len(stack) > 1:
                ax.fill_between(x, stack.min(0), stack.max(0), alpha=0.25, color=color if len(curves) > 1 else "tab:red")
        ax.set_title(" and ".join(label for _, label in curves), fontsize=10)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(f"COCO captions, adversarial training (realism only), {len(steps)} seed{'s' * (len(steps) > 1)}; "
                 f"moving average over {WINDOW} steps")
    fig.tight_layout()
    print(common.save_figure(fig, args.out, "figure2"))


if __name__ == "__main__":
    main()
