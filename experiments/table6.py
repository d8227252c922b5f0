"""Table 6: the judges. Each reward scorer and its judge, trained on disjoint halves of the products (even and odd
product ids), with their held-out quality on their own half's test products beside the majority class and the
bag-of-words logistic regression of the same `train-scorer` run (style: accuracy and macro-F1; click: ROC-AUC and
Spearman with the raw feedback count).
"""
import json
from pathlib import Path

import common

METRICS = {"style": [("accuracy", "accuracy"), ("macro_f1", "macro-F1")],
           "click": [("roc_auc", "ROC-AUC"), ("spearman", "Spearman (count)")]}


def scorer_rows(runs: Path) -> list:
    rows = []
    scorers = [(folder, *(json.loads((folder / f).read_text()) for f in ("scorer.json", "summary.json")))
               for folder in (runs / "scorers").iterdir()]
    # titles before reviews, style before click, each reward scorer before its judge
    scorers.sort(key=lambda s: (s[1]["config"]["field"] != "title", s[1]["kind"] != "style", s[0].name.endswith("judge")))
    for folder, info, summary in scorers:
        cfg = info["config"]
        half = "even" if cfg["corpus"].endswith("even.jsonl") else "odd" if cfg["corpus"].endswith("odd.jsonl") else "?"
        role = folder.name.rsplit("-", 1)[1]
        for key, name in METRICS[info["kind"]]:
            test = summary["test"]
            rows.append([folder.name, cfg["field"] + "s", info["label"], role, f"{half} ids", summary["test_examples"],
                         name] + [common.fmt(test[m].get(key, float("nan"))) for m in ("majority", "bow_logreg", "scorer")])
    return rows


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    header = ["scorer", "texts", "label", "role", "products", "test texts", "metric", "majority", "BoW logistic regression",
              "MiniLM scorer"]
    note = ("Each scorer's test split holds products of its own half that it never saw; the reward scorer and the "
            "judge share no product. The steering runs are rewarded by the `reward` rows and measured by the `judge` rows.")
    print(common.write_table(args.out, "table6", header, scorer_rows(Path(args.runs)), note))


if __name__ == "__main__":
    main()
