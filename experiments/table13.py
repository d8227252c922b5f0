"""Table 13: the titles frontier at matched quality. Table 12's reading (issue 20's goal) of Figure 5's temperature
sweeps on product titles: each adversarial run (realism only, and each remedy of issue 20 on the realism row)
paired with the MLE run it started from, Self-BLEU-4 compared at matched BLEU-4 against the test titles; beside it
table13-pairs (the seeds behind each cell) and table13-dynamics (the runs' training dynamics, Table 5's columns).

Titles reach lower BLEU-4 than captions (about 0.08 to 0.32 over temperatures 0.5-1.5), so the grid is finer than
table 3's: every 0.02 from 0.10 to 0.30, and the difference is quoted at 0.20, about MLE's BLEU-4 at temperature 1.
"""
from pathlib import Path

import numpy as np

import common
from figure5 import MODELS
from table12 import NOTE, goal_rows, header
from table3 import matched
from table5 import HEADER, NOTE as DYNAMICS_NOTE, dynamics_rows

GRID = np.round(np.arange(0.10, 0.31, 0.02), 2)
AT = 0.20


def pair_rows(sweeps: dict, names: dict, grid: np.ndarray) -> list:
    """The seeds behind table 13: MLE's Self-BLEU-4 per seed at each matched BLEU-4 (the spread between MLE seeds; the
    MLE runs that adversarial runs started from), and each adversarial run's difference from the MLE run it started
    from (values a curve does not reach left out)."""
    paired = {s for model, by_seed in sweeps.items() if model != "mle" for s in by_seed}
    mle = {s: common.curve_at(sweeps["mle"][s], "bleu-4", "self-bleu-4", grid) for s in sweeps.get("mle", {}) if s in paired}
    per_model = [("mle", list(mle), np.array(list(mle.values())).reshape(len(mle), len(grid)), "{:.3f}")]
    per_model += [(model, pairs, adv - m, "{:+.3f}") for model, _, _, pairs, m, adv in matched(sweeps, {4: grid})]
    rows = []
    for model, seeds, values, spec in per_model:
        for i, value in enumerate(grid):
            cells = [(s, v) for s, v in zip(seeds, values[:, i]) if not np.isnan(v)]
            if cells:
                rows.append([names[model], f"{value:.2f}", " / ".join(f"s{s} " + spec.format(v) for s, v in cells),
                             common.fmt(*common.mean_std([v for _, v in cells]))])
    return rows


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    sweeps = common.sweeps(Path(args.runs), list(MODELS), every_instance=True, bench="titles")
    names = {m: label for m, (label, _) in MODELS.items()}
    rows = goal_rows(sweeps, "test titles", names, GRID, AT)
    print(common.write_table(args.out, "table13", header(AT), rows, NOTE.format(grid="every 0.02 from 0.10 to 0.30")))
    print(common.write_table(args.out, "table13-pairs", ["model", "matched BLEU-4", "per seed (pair)", "mean ± std"],
                             pair_rows(sweeps, names, GRID),
                             "MLE rows: its Self-BLEU-4 per seed at the matched BLEU-4 (the spread between MLE seeds); "
                             "the other rows: adversarial - MLE Self-BLEU-4 per seed pair. Only values a curve reaches."))
    runs = common.runs_by_model(Path(args.runs), list(MODELS), needs=("metrics.jsonl",), latest=True, bench="titles")
    print(common.write_table(args.out, "table13-dynamics", HEADER,
                             dynamics_rows(runs, names, seed_rows=False),
                             DYNAMICS_NOTE + " Table 5's columns, for the titles runs of Table 13 (each seed's latest "
                             "instance)."))


if __name__ == "__main__":
    main()
