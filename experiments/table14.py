"""Table 14: when the discriminator wins at once. Reviews (up to 48 tokens; a title is about 5) conditioned on the
department and the rating, realism reward only with the quick recipe: the plain run beside two remedies of issue 20
that keep the discriminator's signal, the target-accuracy discriminator (stepped only below accuracy 0.7, label
smoothing 0.1) and dense per-prefix rewards; and a stronger discriminator (ecommerce.FAST_DISC: it reads the whole
review, learns 20x faster and is warmed up longer), plain and with the target accuracy. From each run's
metrics.jsonl, the discriminator warm-up's length and its D(fake) at the end (the target accuracy ends it early),
the share of generator steps in which the discriminator was trained (the target accuracy skips the others), and the
means of its first and last 10 generator steps: D(fake), the discriminator's accuracy, the spread of the realism
reward among the step's samples (what the leave-one-out advantages are made of: near 0, the generator learns
nothing), the KL to the MLE model; and its samples at T=1: BLEU-4 against the test reviews, Self-BLEU-4, distinct-2,
words, and the share longer than the discriminator reads. The MLE generator's samples as the reference row. Mean ±
standard deviation over seeds (each seed's latest instance).
"""
import json
import math
from pathlib import Path

import numpy as np

import common
from advgen import models
from advgen.config import ADVERSARIAL_PRESETS

SETTINGS = {"mle": "MLE (reference)", "realism": "realism", "dtarget": "target-accuracy discriminator",
            "dense": "dense rewards (ScratchGAN)", "fastd": "strong discriminator",
            "fastd-dtarget": "strong discriminator, target accuracy"}
DYNAMICS = [("disc/d_fake", "D(fake)"), ("disc/accuracy", "discriminator accuracy"),
            ("reward/realism_std", "realism std among samples"), ("policy/kl", "KL to MLE")]
WARM_UP = [("disc_warmup/steps", "warm-up steps"), ("disc_warmup/d_fake", "D(fake) at the warm-up's end")]
# The cells of an adversarial run that an MLE run has none of.
STEP_HEADER = [*[name for _, name in WARM_UP], "steps the discriminator trained in",
               *[f"{name}, first -> last 10 steps" for _, name in DYNAMICS]]
SAMPLES = [("bleu-4", "BLEU-4"), ("self-bleu-4", "Self-BLEU-4"), ("distinct-2", "distinct-2"), ("words", "words")]


def first_to_last(by_seed: dict, columns: list = DYNAMICS) -> list:
    """Runs {seed: folder} -> one cell per key of `columns`: its mean over the first and the last 10 steps, over
    seeds."""
    ends = [common.window_means(common.read_jsonl(run / "metrics.jsonl"), [k for k, _ in columns])
            for run in by_seed.values()]
    return [f"{common.fmt(*common.mean_std([e['first'][i] for e in ends]))} -> "
            f"{common.fmt(*common.mean_std([e['last'][i] for e in ends]))}" for i in range(len(columns))]


def warm_up_end(by_seed: dict) -> list:
    """Runs {seed: folder} -> one cell per key of WARM_UP: the discriminator warm-up's last values (metrics.jsonl's
    step 0), over seeds."""
    ends = [next((r for r in common.read_jsonl(run / "metrics.jsonl") if "disc_warmup/steps" in r), {})
            for run in by_seed.values()]  # {}: a run without a warm-up
    return [common.fmt(*common.mean_std([e.get(key, math.nan) for e in ends]), digits=0 if key.endswith("steps") else 3)
            for key, _ in WARM_UP]


def stepped_share(run: Path) -> float:
    """The share of a run's generator steps in which its discriminator was trained: those below its target accuracy
    (metrics.jsonl's disc/stepped), or every step without a target (none with --disc-steps 0)."""
    every = 1 if json.loads((run / "config.json").read_text())["adversarial"]["disc_steps"] else 0
    return float(np.mean([r.get("disc/stepped", every) for r in common.read_jsonl(run / "metrics.jsonl")
                          if "policy/loss" in r]))


def cut_share(run: Path, tokenizers: dict) -> float:
    """The share of a run's samples at T=1 longer than its discriminator reads (disc_max_length tokens, special tokens
    included; an MLE run: the quick recipe's, which its adversarial runs start from). tokenizers: a cache by spec."""
    recipe = json.loads((run / "config.json").read_text()).get("adversarial") or ADVERSARIAL_PRESETS["quick"]
    spec = recipe["discriminator"]
    if spec not in tokenizers:
        tokenizers[spec] = models.discriminator_tokenizer(spec)
    texts = [row["text"] for row in common.read_jsonl(run / "samples-T1.00.jsonl")]
    return float(np.mean([len(ids) > recipe["disc_max_length"] for ids in tokenizers[spec](texts)["input_ids"]]))


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    runs = Path(args.runs)
    found = common.runs_by_model(runs, list(SETTINGS), latest=True, bench="reviews")
    judged = common.evaluations(runs, list(found), bench="reviews")
    rows, tokenizers = [], {}
    for setting, by_seed in found.items():
        dynamics = ["–"] * len(STEP_HEADER) if setting == "mle" else [
            *warm_up_end(by_seed), common.fmt(*common.mean_std([stepped_share(run) for run in by_seed.values()])),
            *first_to_last(by_seed)]
        at_1 = [judged.get(setting, {}).get(seed, {}).get(1.0) for seed in by_seed]
        samples = [common.fmt(*common.mean_std([v[key] for v in at_1 if v])) for key, _ in SAMPLES]
        cut = common.fmt(*common.mean_std([cut_share(run, tokenizers) for run in by_seed.values()]))
        rows.append([SETTINGS[setting], len(by_seed), *dynamics, *samples, cut])
    header = ["run", "seeds", *STEP_HEADER, *[f"{name} (T=1)" for _, name in SAMPLES],
              "longer than the discriminator reads (T=1)"]
    note = ("KL: the sampled estimate per sequence (nats). Samples: prompted by the test split's departments and "
            "ratings; BLEU-4 against all test reviews, Self-BLEU-4 against the other samples, words split on whitespace. "
            "Longer than the discriminator reads: the share of samples over its disc_max_length in its own tokens "
            "(the quick recipe's 32; the strong discriminator's 64), which it judges by their first tokens only; for "
            "MLE, over the 32 of the runs started from it.")
    print(common.write_table(args.out, "table14", header, rows, note))


if __name__ == "__main__":
    main()
