"""Table 5: the adversarial runs' training dynamics in numbers (the plain run and each remedy), from their
metrics.jsonl: for each seed, the mean of its first and of its last `WINDOW` generator steps (the quantities of Figure 2, and the batch's spread of realism,
which the reward mixer divides by); then the mean ± standard deviation of those per-seed values over the seeds.
"""
from pathlib import Path

import numpy as np

import common

WINDOW = 10
COLUMNS = [("reward/realism_mean", "realism (P(real) of the policy's samples)"), ("reward/realism_std", "realism std"),
           ("reward/total_mean", "mixed reward"), ("disc/d_real", "D(real)"), ("disc/d_fake", "D(fake)"),
           ("disc/accuracy", "discriminator accuracy"), ("policy/kl", "KL to init (nats/seq)"),
           ("policy/entropy", "entropy (nats/seq)"), ("charts/distinct2", "batch distinct-2")]


def dynamics_rows(runs_by_model: dict, names: dict, seed_rows: bool = True) -> list:
    """{model: {seed: run folder}} -> the table's rows: for each model (MLE left out), each seed's first and last
    WINDOW steps (with `seed_rows`), then the mean ± standard deviation of the seeds' means."""
    rows = []
    for model, runs in runs_by_model.items():
        if model == "mle":
            continue
        ends = {}  # (seed, "first"/"last") -> the column means
        for seed, run in runs.items():
            means = common.window_means(common.read_jsonl(run / "metrics.jsonl"), [key for key, _ in COLUMNS], WINDOW)
            for end in ("first", "last"):
                ends[seed, end] = means[end]
        if seed_rows:
            rows += [[names[model], f"seed {seed}", end, *(f"{v:.3f}" for v in ends[seed, end])]
                     for seed in runs for end in ("first", "last")]
        for end in ("first", "last"):
            values = np.array([ends[seed, end] for seed in runs]).reshape(len(runs), len(COLUMNS))
            rows.append([names[model], f"{len(runs)} seeds", end,
                         *(common.fmt(*common.mean_std(values[:, i])) for i in range(len(COLUMNS)))])
    return rows


HEADER = ["model", "run", f"steps ({WINDOW} of each end)", *(label for _, label in COLUMNS)]
NOTE = ("Means over the first and the last generator steps of each adversarial run; the seeds' rows: mean ± standard "
        "deviation of the seeds' means.")


def main():
    args = common.arguments(__doc__.split("\n")[0])
    rows = dynamics_rows(common.runs_by_model(Path(args.runs)), common.MODELS)
    print(common.write_table(args.out, "table5", HEADER, rows, NOTE))


if __name__ == "__main__":
    main()
