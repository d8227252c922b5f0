"""Table 12: does any adversarial model move the COCO frontier? Table 3's matched BLEU-4 comparison, one row per
model and set of references, read against the goal of issue 20: an adversarial curve below MLE's (lower Self-BLEU-4
at every matched BLEU-4 over a range) whose spread over seeds does not overlap MLE's at two or more matched values.

At each BLEU-4 of table3's grid that every paired curve reaches: the difference adversarial - MLE in Self-BLEU-4
(negative: more diverse at the same quality), whether it is negative in every seed pair, and whether the two
models' ranges (mean ± standard deviation over seeds) are separated, and in whose favour (needs two or more pairs).
"""
from pathlib import Path

import numpy as np

import common
from table3 import GRID, REFERENCES, matched

AT = 0.30  # the matched BLEU-4 quoted in the paper's text


def spans(values: list) -> str:
    """Grid values -> '3: 0.35-0.45' (how many, first-last), '1: 0.15', or '0'."""
    if len(values) < 2:
        return "".join(f"1: {v:.2f}" for v in values) or "0"
    return f"{len(values)}: {values[0]:.2f}-{values[-1]:.2f}"


def verdict(grid: np.ndarray, mle: np.ndarray, adv: np.ndarray, at: float = AT) -> dict:
    """Self-BLEU-4 of the MLE and adversarial runs of the seed pairs, mle and adv (pairs, grid) at the `grid` of
    matched BLEU-4 (NaN outside a curve) -> the grid values each reading holds at, among those every curve reaches,
    and the differences adversarial - MLE (pairs,) at `at` (None where not reached)."""
    reached = ~(np.isnan(mle).any(0) | np.isnan(adv).any(0)) if len(mle) else np.zeros(len(grid), bool)
    diff = adv - mle                                                                          # (pairs, grid)
    (m_mean, m_std), (a_mean, a_std) = [np.array([common.mean_std(v[:, i]) for i in range(len(grid))]).T.reshape(2, -1)
                                        for v in (mle, adv)]

    def where(holds) -> list:
        return [float(g) for i, g in enumerate(grid) if reached[i] and holds(i)]

    quoted = np.flatnonzero(np.isclose(grid, at))
    return {"reached": where(lambda i: True),
            "ahead": where(lambda i: diff[:, i].mean() < 0),
            "every": where(lambda i: (diff[:, i] < 0).all()),
            "adversarial separated": where(lambda i: a_mean[i] + a_std[i] < m_mean[i] - m_std[i]),
            "mle separated": where(lambda i: m_mean[i] + m_std[i] < a_mean[i] - a_std[i]),
            "at": diff[:, quoted[0]] if len(quoted) and reached[quoted[0]] else None}


def goal_rows(sweeps: dict, references: str, names: dict, grid: np.ndarray, at: float = AT) -> list:
    """One row per adversarial model of `sweeps` (common.sweeps, every instance) paired with MLE at the matched
    BLEU-4 values `grid`: the readings of `verdict` and the goal's."""
    rows = []
    for model, _, _, pairs, mle, adv in matched(sweeps, {4: grid}):
        v = verdict(grid, mle, adv, at)
        if not v["reached"]:
            continue
        quoted = "–" if v["at"] is None else f"{common.fmt(*common.mean_std(v['at']))} ({int((v['at'] < 0).sum())}/{len(pairs)})"
        goal = "met" if len(v["adversarial separated"]) >= 2 and len(v["every"]) >= 2 else "not met"
        rows.append([references, names[model], len(pairs), spans(v["reached"]), quoted, spans(v["ahead"]),
                     spans(v["every"]), spans(v["adversarial separated"]), spans(v["mle separated"]), goal])
    return rows


def header(at: float = AT) -> list:
    return ["references", "model", "seed pairs", "matched BLEU-4 reached", f"adversarial - MLE at {at:.2f} (pairs ahead)",
            "values where the mean is ahead", "values ahead in every pair", "spreads separated, adversarial ahead",
            "spreads separated, MLE ahead", "goal (2+ separated, ahead)"]


NOTE = ("Matched BLEU-4 values: {grid}; a cell 'k: a-b' counts the k grid values from a to b where it holds. Ahead: "
        "lower Self-BLEU-4 than MLE at the same BLEU-4. Separated: the models' mean ± standard deviation over the seed "
        "pairs do not overlap (only with 2 or more pairs). Each adversarial run paired with the MLE run it started from.")


def main():
    args = common.arguments(__doc__.split("\n")[0])
    rows = []
    for references, label in REFERENCES.items():
        sweeps = common.sweeps(Path(args.runs), every_instance=True, references=references)
        rows += goal_rows(sweeps, label, common.MODELS, GRID[4])
    print(common.write_table(args.out, "table12", header(), rows, NOTE.format(grid="table 3's grid (every 0.05)")))


if __name__ == "__main__":
    main()
