"""Table 9: the KL coefficient on product titles, realism reward only (0.05, 0.2, 0.5 = the quick preset, 1.0):
the KL to the MLE model and the realism reward over the last 10 steps, and the samples at T=1: quality, diversity
and what the judges say. Mean ± standard deviation over the seeds every row has (each seed's latest MLE instance and
the runs started from it), so that no coefficient is read on a seed another lacks; the MLE model's samples as the
reference row. Beside it table9-seeds: each run of the table seed by seed, with what n-gram metrics cannot see of a
generator collapsed onto one-word titles (distinct titles, one-word and empty titles, the commonest title).
"""
from pathlib import Path

import common

KL = {"kl0.05": 0.05, "kl0.2": 0.2, "realism": 0.5, "kl1": 1.0}
COLUMNS = [("bleu-4", "BLEU-4"), ("self-bleu-4", "Self-BLEU-4"), ("distinct-2", "distinct-2"),
           ("style-balanced-accuracy/scorer-sentiment-judge", "judge: balanced sentiment accuracy"),
           ("click/scorer-click-judge", "judge: P(click)"), ("words", "words per title"),
           ("top-share", "share of the commonest title")]
SEED_COLUMNS = [("self-bleu-4", "Self-BLEU-4"), ("distinct-2", "distinct-2"), ("words", "words per title"),
                ("distinct-texts", "distinct titles / titles"), ("one-word", "one-word titles"),
                ("empty", "empty titles"), ("top-share", "share of the commonest title")]


def label(setting: str) -> str:
    return "MLE" if setting == "mle" else f"{KL[setting]:g}"


def seed_rows(found: dict, evaluations: dict) -> list:
    """Each run on its own: its KL over the last 10 steps and at its peak, and its samples at T=1."""
    rows = []
    for setting, by_seed in found.items():
        for s, run in by_seed.items():
            values = evaluations.get(setting, {}).get(s, {}).get(1.0)
            if values is None:
                continue
            steps = [r for r in common.read_jsonl(run / "metrics.jsonl") if "policy/kl" in r]
            peak = max(steps, key=lambda r: r["policy/kl"], default=None)
            trained = [common.fmt(common.final_mean(steps, "policy/kl")),
                       f"{peak['policy/kl']:.3f} (step {peak['step']})"] if peak else ["–", "–"]
            rows.append([label(setting), run.name, *trained, *[common.fmt(values[key]) for key, _ in SEED_COLUMNS],
                         repr(values["top-text"])])
    return rows


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    runs = Path(args.runs)
    found = common.runs_by_model(runs, ["mle", *common.group(runs, "kl")], latest=True, bench="titles")
    shared = set.intersection(*(set(by_seed) for by_seed in found.values())) if found else set()
    found = {setting: {s: run for s, run in by_seed.items() if s in shared} for setting, by_seed in found.items()}
    evaluations = common.evaluations(runs, list(found))
    rows = []
    for setting, by_seed in found.items():
        metrics = [common.read_jsonl(run / "metrics.jsonl") for run in by_seed.values()]
        seeds = [s for s in by_seed if 1.0 in evaluations.get(setting, {}).get(s, {})]
        trained = [common.fmt(*common.mean_std([common.final_mean(m, key) for m in metrics]))
                   for key in ("policy/kl", "reward/realism_mean", "disc/d_fake")] if setting != "mle" else ["–"] * 3
        rows.append([label(setting), len(by_seed), *trained,
                     *[common.fmt(*common.mean_std([evaluations[setting][s][1.0][key] for s in seeds]))
                       for key, _ in COLUMNS]])
    header = ["kl_coef", "seeds", "KL to MLE, last 10 steps", "realism reward, last 10 steps", "D(fake), last 10 steps",
              *[f"{name} (T=1)" for _, name in COLUMNS]]
    print(common.write_table(args.out, "table9", header, rows,
                             "KL: the sampled estimate per sequence (sum over tokens of log p_policy - log p_MLE). Seeds: "
                             f"{', '.join(sorted(shared, key=common.seed_order)) or 'none'}, those every row has."))
    print(common.write_table(args.out, "table9-seeds",
                             ["kl_coef", "run", "KL to MLE, last 10 steps", "KL to MLE, peak",
                              *[f"{name} (T=1)" for _, name in SEED_COLUMNS], "the commonest title (T=1)"],
                             seed_rows(found, evaluations), "Each run of Table 9 on its own; its 1,000 titles at T=1."))


if __name__ == "__main__":
    main()
