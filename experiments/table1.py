"""Table 1: BLEU-2..5 and Self-BLEU-2..5 on COCO captions, advgen beside Texygen's published rows.

Texygen's protocol (`advgen evaluate --protocol texygen`): 10,000 samples, NLTK Treebank words, BLEU of every sample
against all the test captions, Self-BLEU of every sample against all the other samples, smoothing method 1. advgen's
rows come from the sweeps (the same protocol at every temperature): at temperature 1, and interpolated in
temperature to where BLEU-4 equals Texygen MLE's 0.305; mean ± standard deviation over seeds. The data row scores
the 10,000 train captions as if they were samples.
"""
import json
from pathlib import Path

import common

ORDERS = (2, 3, 4, 5)
COLUMNS = [f"bleu-{n}" for n in ORDERS] + [f"self-bleu-{n}" for n in ORDERS]
# Texygen (Zhu et al. 2018, "Texygen: A Benchmarking Platform for Text Generation Models"), COCO captions table.
TEXYGEN = {
    "SeqGAN": (.745, .498, .294, .180, .950, .840, .670, .489),
    "MaliGAN": (.673, .432, .257, .159, .918, .781, .606, .437),
    "RankGAN": (.743, .467, .264, .156, .959, .882, .762, .618),
    "LeakGAN": (.746, .528, .355, .230, .966, .913, .848, .780),
    "TextGAN": (.593, .463, .277, .207, .942, .931, .804, .746),
    "MLE": (.731, .497, .305, .189, .916, .769, .583, .408),
}
MATCHED_BLEU4 = TEXYGEN["MLE"][2]


def main():
    args = common.arguments(__doc__.split("\n")[0])
    runs = Path(args.runs)
    header = ["model", "seeds", "temperature"] + [c.replace("self-bleu", "Self-BLEU").replace("bleu", "BLEU")
                                                   for c in COLUMNS]
    rows = [[f"Texygen {name} (published)", "", "1"] + [f"{v:.3f}" for v in values] for name, values in TEXYGEN.items()]
    data = json.loads((runs / "data-texygen.json").read_text())["metrics"]
    rows.append(["COCO train captions (real data)", "", ""] + [f"{data[c]:.3f}" for c in COLUMNS])
    for model, by_seed in common.sweeps(runs).items():
        at_one = [common.at_temperature(r, 1.0) for r in by_seed.values()]
        rows.append([common.MODELS[model], len(at_one), "1"]
                    + [common.fmt(*common.mean_std([p[c] for p in at_one])) for c in COLUMNS])
        matched = [common.interpolate_at(r, "bleu-4", MATCHED_BLEU4, COLUMNS) for r in by_seed.values()]
        matched = [m for m in matched if m is not None]
        if matched:
            rows.append([f"{common.MODELS[model]}, BLEU-4 matched to {MATCHED_BLEU4}", len(matched),
                         common.fmt(*common.mean_std([m["temperature"] for m in matched]), digits=2)]
                        + [common.fmt(*common.mean_std([m[c] for m in matched])) for c in COLUMNS])
    note = ("advgen rows: mean ± standard deviation over seeds (one value: one seed). The matched rows are the "
            "sweep interpolated linearly in temperature between the two points that bracket BLEU-4 = "
            f"{MATCHED_BLEU4}. Recompute any advgen cell from its samples: `advgen evaluate "
            "paper/runs/coco/<run>/samples/T1.00.txt.gz --references experiments/data/coco/coco_test.txt "
            "--protocol texygen --field text --out report.json`.")
    print(common.write_table(args.out, "table1", header, rows, note))


if __name__ == "__main__":
    main()
