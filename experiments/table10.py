"""Table 10: the scenes of the train and the test captions, and of each model's samples at temperature 1.

Texygen's COCO files are not two samples of one distribution: the words that tell them apart most are those of
the scenes pictured. For the words in at least 2 % of the train or the test captions, the share of captions that
contain the word (lower-cased letter runs) in the train split, the held-out train captions (the coco preset's
valid split), the test file and each model's samples at temperature 1 (mean over seeds); the words shown are
those whose shares in train and test differ most in ratio, the train-heavy ones first.
"""
import gzip
import re
from pathlib import Path

import common
import run

WORD = re.compile(r"[a-z]+")
MIN_SHARE, WORDS = 0.02, 8  # words in at least 2 % of one file; the 8 most train-heavy and the 8 most test-heavy


def shares(captions: list) -> dict:
    """{word: the share of the captions that contain it}"""
    counts = {}
    for caption in captions:
        for word in set(WORD.findall(caption.lower())):
            counts[word] = counts.get(word, 0) + 1
    return {word: count / len(captions) for word, count in counts.items()}


def main():
    args = common.arguments(__doc__.split("\n")[0])
    train_file, test_file = run.DATA / "coco_train.txt", run.DATA / "coco_test.txt"
    splits = run.coco_splits(train_file, test_file)
    data = {"train split": shares(splits["train"]), "held-out train captions": shares(splits["valid"]),
            "test captions": shares((run.REPO / test_file).read_text().splitlines())}
    train, test = data["train split"], data["test captions"]
    common_words = [w for w in set(train) | set(test) if max(train.get(w, 0), test.get(w, 0)) >= MIN_SHARE]
    ratio = {w: (train.get(w, 0) + 1e-4) / (test.get(w, 0) + 1e-4) for w in common_words}
    ranked = sorted(common_words, key=lambda w: -ratio[w])
    words = ranked[:WORDS] + ranked[-WORDS:][::-1]
    columns = dict(data)
    for model, seeds in common.runs_by_model(Path(args.runs)).items():
        files = [folder / "samples" / "T1.00.txt.gz" for folder in seeds.values()]
        per_seed = [shares(gzip.decompress(f.read_bytes()).decode().split("\n")[:-1]) for f in files if f.is_file()]
        if per_seed:
            label = f"{common.MODELS[model]} ({len(per_seed)} seed{'s' * (len(per_seed) > 1)})"
            columns[label] = {w: sum(s.get(w, 0) for s in per_seed) / len(per_seed) for w in words}
    rows = [[w, f"{ratio[w]:.3g}", *[f"{columns[c].get(w, 0):.3f}" for c in columns]] for w in words]
    note = (f"Share of captions (or samples) containing the word; train/test: the ratio of the train split's share to "
            f"the test file's. Of the {len(common_words)} words in at least {MIN_SHARE:.0%} of the train or the test "
            f"captions, the {WORDS} with the highest and the {WORDS} with the lowest ratio.")
    print(common.write_table(args.out, "table10", ["word", "train / test", *columns], rows, note))


if __name__ == "__main__":
    main()
