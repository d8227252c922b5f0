"""Table 2: FED and MAUVE of each model on COCO captions, at temperature 1 and at the data's diversity.

The data's diversity: the sweep temperature whose Self-BLEU-4 is nearest the train captions' own (experiments/run.py
picks it and measures it). Both against the 10,000 test captions, on all-MiniLM-L6-v2 sentence embeddings
(`advgen evaluate --metrics fed,mauve`); FED lower is better, MAUVE higher. The data row: the 10,000 train captions.
The first row measures two halves of the test captions against each other (5,000 each): what two samples of one
distribution score. Mean ± standard deviation over seeds.
"""
import json
import re
from pathlib import Path

import common


def main():
    args = common.arguments(__doc__.split("\n")[0])
    runs = Path(args.runs)
    data = json.loads((runs / "data-fed-mauve.json").read_text())["metrics"]
    halves = json.loads((runs / "data-test-halves-fed-mauve.json").read_text())["metrics"]
    rows = [["test captions: odd lines against even lines (one distribution)", "", "", f"{halves['fed']:.4f}",
             f"{halves['mauve']:.3f}"],
            ["COCO train captions (real data)", "", "", f"{data['fed']:.4f}", f"{data['mauve']:.3f}"]]
    for model, by_seed in common.runs_by_model(runs).items():
        at_one, matched = [], []
        for run in by_seed.values():
            reports = {float(re.search(r"T([\d.]+)\.json$", path.name)[1]): json.loads(path.read_text())["metrics"]
                       for path in run.glob("fed-mauve-T*.json")}
            others = [t for t in reports if t != 1.0]  # none: the data's diversity is at temperature 1 itself
            for points, t in ((at_one, 1.0), (matched, others[0] if others else 1.0)):
                points.append((t, reports[t]["fed"], reports[t]["mauve"]))
        for label, points in (("1", at_one), ("data's Self-BLEU-4", matched)):
            if points:
                rows.append([common.MODELS[model], len(points),
                             f"{label}: " + ", ".join(f"{t:g}" for t, _, _ in points) if label != "1" else "1",
                             common.fmt(*common.mean_std([p[1] for p in points]), digits=4),
                             common.fmt(*common.mean_std([p[2] for p in points]))])
    header = ["model", "seeds", "temperature", "FED (lower: closer)", "MAUVE (higher: closer)"]
    print(common.write_table(args.out, "table2", header, rows))


if __name__ == "__main__":
    main()
