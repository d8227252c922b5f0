"""Table 11: the quality each model reaches at the data's own diversity, against both sets of references.

Each sweep interpolated (on its frontier, common.curve_at) to the Self-BLEU-4 of the captions the generators are
trained on, scored as samples: BLEU-4 there against the test captions (Texygen's protocol; the data's point is
the whole train file, data-texygen.json) and against the held-out train captions (the data's point is the train
split, data-held-out.json). A generator as good as the data reaches the data's BLEU-4; higher is closer to the
references at the same diversity. Mean ± standard deviation over seeds, and each seed's value.
"""
import json
from pathlib import Path

import numpy as np

import common

REFERENCES = {"test": ("test captions", "data-texygen.json"),
              "held-out": ("held-out train captions", "data-held-out.json")}


def main():
    args = common.arguments(__doc__.split("\n")[0])
    runs = Path(args.runs)
    rows = []
    for references, (label, data_file) in REFERENCES.items():
        if not (runs / data_file).is_file():
            continue
        data = json.loads((runs / data_file).read_text())["metrics"]
        rows.append([label, "train captions (the data)", "", f"{data['self-bleu-4']:.3f}", f"{data['bleu-4']:.3f}", ""])
        for model, by_seed in common.sweeps(runs, references=references).items():
            at = {s: common.curve_at(common.frontier(r, "bleu-4"), "self-bleu-4", "bleu-4",
                                     np.array([data["self-bleu-4"]]))[0] for s, r in by_seed.items()}
            rows.append([label, common.MODELS[model], len(at), f"{data['self-bleu-4']:.3f}",
                         common.fmt(*common.mean_std(list(at.values()))),
                         " / ".join(f"s{s} {v:.3f}" for s, v in at.items())])
    header = ["references", "model", "seeds", "Self-BLEU-4 (the data's)", "BLEU-4 there", "by seed"]
    note = "One run per seed (the first instance of each seed label); – where a sweep does not reach that diversity."
    print(common.write_table(args.out, "table11", header, rows, note))


if __name__ == "__main__":
    main()
