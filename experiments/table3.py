"""Table 3: where the adversarial frontier lies against MLE's, at matched quality.

For each adversarial model (the plain run and each remedy) and each seed, the adversarial run and the MLE run it
started from are paired, with BLEU against two sets of references: the test captions (Texygen's protocol, of other
scenes than the train captions: table10) and the held-out train captions (experiments/run.py: coco_splits). Along
each sweep's frontier (common.frontier: the temperatures from its BLEU-n peak upward, where BLEU-n and Self-BLEU-n
both fall with temperature), Self-BLEU-n is interpolated linearly as a function of BLEU-n; at each BLEU-n value that
every curve reaches, the difference adversarial - MLE in Self-BLEU-n (negative: the adversarial generator is more
diverse at the same quality, i.e. it beats MLE there). Mean ± standard deviation over the seed pairs.
"""
import json
from pathlib import Path

import numpy as np

import common

REFERENCES = {"test": "test captions", "held-out": "held-out train captions"}
GRID = {4: np.round(np.arange(0.15, 0.70, 0.05), 2), 5: np.round(np.arange(0.08, 0.55, 0.04), 2)}  # where reached


def main():
    args = common.arguments(__doc__.split("\n")[0])
    rows = []
    for references, label in REFERENCES.items():
        # each run beside the MLE of its own seed label
        rows += matched_rows(common.sweeps(Path(args.runs), every_instance=True, references=references), label)
    header = ["references", "model", "quality", "matched value", "seed pairs", "MLE Self-BLEU", "adversarial Self-BLEU",
              "adversarial - MLE", "pairs where adversarial is more diverse", "adversarial - MLE by seed"]
    data = Path(args.runs) / "data-held-out.json"
    held_out = json.loads(data.read_text())["n_references"] if data.is_file() else "no"
    note = ("Self-BLEU at the matched BLEU of the same order (BLEU-4 with Self-BLEU-4, BLEU-5 with Self-BLEU-5); each "
            "adversarial run is paired with the MLE run of its seed, the one it started from. BLEU against the test "
            "captions (Texygen's protocol) or against the held-out train captions (the coco preset's valid split, "
            f"{held_out} captions from the train captions' own distribution); Self-BLEU is the same in both.")
    print(common.write_table(args.out, "table3", header, rows, note))


def matched(sweeps: dict, grids: dict = GRID):
    """Each adversarial model beside the MLE runs of its seed labels -> (model, n, grid, pairs, mle, adv) per BLEU
    order n of `grids` ({n: BLEU-n values}), mle and adv (pairs, grid) Self-BLEU-n at each grid value of BLEU-n (NaN
    outside a curve's range)."""
    for model in [m for m in sweeps if m != "mle"]:
        pairs = sorted(set(sweeps.get("mle", {})) & set(sweeps[model]))
        for n, grid in grids.items():
            x, y = f"bleu-{n}", f"self-bleu-{n}"
            mle = np.array([common.curve_at(sweeps["mle"][s], x, y, grid) for s in pairs]).reshape(len(pairs), len(grid))
            adv = np.array([common.curve_at(sweeps[model][s], x, y, grid) for s in pairs]).reshape(len(pairs), len(grid))
            yield model, n, grid, pairs, mle, adv


def matched_rows(sweeps: dict, references: str) -> list:
    rows = []
    for model, n, grid, pairs, mle, adv in matched(sweeps):
        for i, value in enumerate(grid):
            if not pairs or np.isnan(mle[:, i]).any() or np.isnan(adv[:, i]).any():
                continue  # outside some curve's range
            diff = adv[:, i] - mle[:, i]
            rows.append([references, common.MODELS[model], f"BLEU-{n}", f"{value:.2f}", len(pairs),
                         common.fmt(*common.mean_std(mle[:, i])), common.fmt(*common.mean_std(adv[:, i])),
                         common.fmt(*common.mean_std(diff)), f"{int((diff < 0).sum())}/{len(pairs)}",
                         " / ".join(f"s{s} {d:+.3f}" for s, d in zip(pairs, diff))])
    return rows


if __name__ == "__main__":
    main()
