"""Table 8: the REINFORCE baselines (none, moving average, leave-one-out, self-critical) on product titles, realism
reward only. The variance of the policy-gradient estimate under each baseline on the same rollouts
(benchmarks/baseline_variance.py on each seed's leave-one-out run: its generator and discriminator, 16 minibatches of
16 prompts x 4 samples), relative to no baseline; and each baseline's own training run: the realism reward and
D(fake) over the last 10 of its steps, its KL to the MLE model, and its samples' Self-BLEU-4 and judged sentiment.
Mean ± standard deviation over seeds.
"""
import json
from pathlib import Path

import common

KINDS = {"baseline-none": "none", "baseline-ema": "ema", "realism": "loo", "baseline-self-critical": "self-critical"}


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    runs = Path(args.runs)
    found = common.runs_by_model(runs, common.group(runs, "baselines"), latest=True, bench="titles")
    evaluations = common.evaluations(runs, list(found))
    variance = {seed: json.loads((run / "baseline-variance.json").read_text())
                for seed, run in found.get("realism", {}).items() if (run / "baseline-variance.json").is_file()}
    rows = []
    for setting, by_seed in found.items():
        kind = KINDS[setting]
        metrics = {seed: common.read_jsonl(run / "metrics.jsonl") for seed, run in by_seed.items()}

        def final(key):
            return common.fmt(*common.mean_std([common.final_mean(m, key) for m in metrics.values()]))

        def at_t1(key):
            return common.fmt(*common.mean_std([evaluations[setting][s][1.0][key] for s in by_seed
                                                if 1.0 in evaluations.get(setting, {}).get(s, {})]))

        rows.append([kind, len(by_seed), f"{len(variance)}",
                     common.fmt(*common.mean_std([v["ratio_to_none"][kind] for v in variance.values()]), spec="g"),
                     final("reward/realism_mean"), final("disc/d_fake"), final("policy/kl"),
                     at_t1("self-bleu-4"), at_t1("style-balanced-accuracy/scorer-sentiment-judge")])
    header = ["baseline", "training runs (seeds)", "variance measured (seeds)", "gradient variance / none",
              "realism reward, last 10 steps", "D(fake), last 10 steps", "KL to MLE, last 10 steps",
              "Self-BLEU-4 (T=1)", "judge: balanced sentiment accuracy (T=1)"]
    note = ("Variance: the total variance over minibatches of the gradient estimate, summed over the generator's "
            "parameters, on the same samples and rewards for every baseline. The realism reward is the "
            "discriminator's P(real) of the step's samples, before the discriminator's own step.")
    print(common.write_table(args.out, "table8", header, rows, note))


if __name__ == "__main__":
    main()
