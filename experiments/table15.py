"""Table 15: a pretrained generator. The packaged SmolLM2-135M fine-tuned by MLE on the titles task (titles conditioned
on the rating), then trained adversarially with realism only and with the style reward, beside the from-scratch
generator's rows of the same settings: what each training run cost (wall seconds on the machine that ran it), the
test NLL per word (tokenizers differ, so not per token), and at each temperature what the judges say of the samples,
quality against the test titles and diversity (Table 7's columns and samples protocol). table15-dynamics: each
adversarial run's discriminator, realism spread and KL over its first and last 10 steps (Table 14's).
table15-samples: the
first 10 samples at T=1 of every run, unedited. Mean ± standard deviation over seeds (each seed's latest instance).
"""
import json
from pathlib import Path

import common
from table7 import JUDGE
from table14 import DYNAMICS, first_to_last

GENERATORS = {"titles": "from scratch (gpt2-mini, 8k corpus tokenizer)", "smollm2": "SmolLM2-135M (pretrained)"}
SETTINGS = ("mle", "realism", "style3")  # smollm2-<setting>-s<seed> beside titles-<setting>-s<seed>
COLUMNS = [(f"style-accuracy/{JUDGE}", "judge: sentiment accuracy"),
           (f"style-balanced-accuracy/{JUDGE}", "judge: balanced accuracy"),
           ("click/scorer-click-judge", "judge: P(click)"), ("bleu-4", "BLEU-4"), ("self-bleu-4", "Self-BLEU-4"),
           ("distinct-2", "distinct-2"), ("words", "words per title")]
EXAMPLES = 10


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    runs = Path(args.runs)
    rows, examples, dynamics = [], [], []
    for bench, generator in GENERATORS.items():
        found = common.runs_by_model(runs, list(SETTINGS), latest=True, bench=bench,
                                     needs=("summary.json", "eval-T1.00.json"))  # measured to the end (T=1 is last)
        judged = common.evaluations(runs, list(found), bench=bench)
        for setting, by_seed in found.items():
            summaries = [json.loads((run / "summary.json").read_text()) for run in by_seed.values()]
            cost = common.fmt(*common.mean_std([s["wall_seconds"] for s in summaries]), 0)
            nll = common.fmt(*common.mean_std([s.get("test_nll_per_word", float("nan")) for s in summaries]), 2)
            by_t = judged.get(setting, {})
            for t in sorted({t for points in by_t.values() for t in points}):
                values = [points[t] for points in by_t.values() if t in points]
                rows.append([generator, setting, len(values), cost, nll, f"{t:.1f}",
                             *[common.fmt(*common.mean_std([v[key] for v in values])) for key, _ in COLUMNS]])
            if setting != "mle":
                dynamics.append([generator, setting, len(by_seed), *first_to_last(by_seed)])
            run = next(iter(by_seed.values()))  # the first seed's samples
            for sample in common.read_jsonl(run / "samples-T1.00.jsonl")[:EXAMPLES]:
                examples.append([generator, setting, run.name, sample["condition"]["rating"],
                                 " ⏎ ".join(sample["text"].replace("|", "\\|").splitlines())])
    header = ["generator", "setting", "seeds", "training wall s", "test NLL per word", "T",
              *[name for _, name in COLUMNS]]
    note = ("Training wall s: the run's own training (the adversarial runs start from their MLE run, whose cost is on "
            "its row), on 2 CPU cores. Samples: 1,000 per temperature, prompted by the test split's ratings; the judges "
            "and metrics as in Table 7.")
    print(common.write_table(args.out, "table15", header, rows, note))
    print(common.write_table(args.out, "table15-dynamics", ["generator", "setting", "seeds",
                                                            *[f"{name}, first -> last 10 steps" for _, name in DYNAMICS]],
                             dynamics, "KL: the sampled estimate per sequence (nats)."))
    print(common.write_table(args.out, "table15-samples", ["generator", "setting", "run", "prompt's rating",
                                                           "sample (T=1, unedited; ⏎ a line break)"], examples))


if __name__ == "__main__":
    main()
