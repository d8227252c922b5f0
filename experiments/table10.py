"""Table 10: the scenes of the train and the test captions, and of each model's samples at temperature 1.

Texygen's COCO files are not two samples of one distribution: the words that tell them apart most are those of
the scenes pictured. For the words in at least 2 % of the train or the test captions, the share of captions that
contain the word (lower-cased letter runs) in the train split, the held-out train captions (the coco preset's
valid split), the test file and each run's samples at temperature 1, beside the run's Table 3 gap against the test
captions; the words shown are those whose shares in train and test differ most in ratio, the train-heavy ones
first.
"""
import re
from pathlib import Path

import numpy as np
from scipy import stats

import common
import run

WORD = re.compile(r"[a-z]+")
MIN_SHARE, WORDS = 0.02, 8  # words in at least 2 % of one file; the 8 most train-heavy and the 8 most test-heavy
MATCHED = 0.30  # the test BLEU-4 at which each run's Table 3 gap is shown beside its words


def shares(captions: list, scene: tuple = ()) -> dict:
    """{word: the share of the captions that contain it}, and under "scene" the share that contain any of `scene`."""
    counts = {}
    for caption in captions:
        found = set(WORD.findall(caption.lower()))
        for word in found | ({"scene"} if found & set(scene) else set()):
            counts[word] = counts.get(word, 0) + 1
    return {word: count / len(captions) for word, count in counts.items()}


def main():
    args = common.arguments(__doc__.split("\n")[0])
    runs = Path(args.runs)
    train_file, test_file = run.DATA / "coco_train.txt", run.DATA / "coco_test.txt"
    splits = run.coco_splits(train_file, test_file)
    test_captions = (run.REPO / test_file).read_text().splitlines()
    train, test = shares(splits["train"]), shares(test_captions)
    common_words = [w for w in set(train) | set(test) if max(train.get(w, 0), test.get(w, 0)) >= MIN_SHARE]
    ratio = {w: (train.get(w, 0) + 1e-4) / (test.get(w, 0) + 1e-4) for w in common_words}
    ranked = sorted(common_words, key=lambda w: -ratio[w])
    words = ranked[:WORDS] + ranked[-WORDS:][::-1]
    scene = tuple(words[:WORDS])  # the train file's own scenes
    data = {name: shares(captions, scene) for name, captions in (("train split", splits["train"]),
            ("held-out train captions", splits["valid"]), ("test captions", test_captions))}
    rows = [[name, "", "–", "–", *[f"{found.get(w, 0):.3f}" for w in ("scene", *words)]]
            for name, found in data.items()]
    sweeps = common.sweeps(runs, every_instance=True)
    found = {(model, seed): shares(common.read_samples(folder / "samples" / "T1.00.txt.gz"), scene)
             for model, seeds in common.runs_by_model(runs, every_instance=True).items()
             for seed, folder in seeds.items() if (folder / "samples" / "T1.00.txt.gz").is_file()}
    gaps, moves = [], []
    for (model, seed), values in found.items():
        move = values.get("scene", 0) - found[("mle", seed)].get("scene", 0) if ("mle", seed) in found else np.nan
        gaps.append(gap(sweeps, model, seed))
        moves.append(np.nan if model == "mle" else move)
        rows.append([common.MODELS[model], seed, common.fmt(gaps[-1]), common.fmt(moves[-1]),
                     *[f"{values.get(w, 0):.3f}" for w in ("scene", *words)]])
    paired = [(g, m) for g, m in zip(gaps, moves) if not (np.isnan(g) or np.isnan(m))]
    rho = stats.spearmanr(*zip(*paired))[0] if len(paired) > 2 else np.nan
    header = ["captions or samples (T=1)", "seed", f"Self-BLEU-4 - its MLE's at test BLEU-4 {MATCHED}",
              "train-scene share - its MLE's", "train-scene share (any of the first 8 words)", *words]
    note = (f"Share of the captions (or samples) that contain each word. Of the {len(common_words)} words in at least "
            f"{MIN_SHARE:.0%} of the train split or the test captions, the {WORDS} whose share is highest in train "
            f"relative to test (train / test: {', '.join(f'{ratio[w]:.3g}' for w in words[:WORDS])}) and the {WORDS} "
            f"lowest ({', '.join(f'{ratio[w]:.3g}' for w in words[WORDS:])}). The gap column is Table 3's (against "
            f"the test captions): negative, the run is more diverse than the MLE run it started from at that BLEU-4. "
            f"Train-scene share: the share naming any of the 8 train-heavy words. Spearman's correlation of the gap "
            f"with the change of the train-scene share from its MLE, over the {len(paired)} adversarial runs: "
            f"{rho:.2f}.")
    print(common.write_table(args.out, "table10", header, rows, note))


def gap(sweeps: dict, model: str, seed: str) -> float:
    """Table 3's difference for one run at test BLEU-4 = MATCHED: its Self-BLEU-4 minus its MLE's (NaN for MLE)."""
    if model == "mle" or seed not in sweeps.get("mle", {}) or seed not in sweeps.get(model, {}):
        return float("nan")
    at = [common.curve_at(sweeps[m][seed], "bleu-4", "self-bleu-4", np.array([MATCHED]))[0] for m in (model, "mle")]
    return at[0] - at[1]


if __name__ == "__main__":
    main()
