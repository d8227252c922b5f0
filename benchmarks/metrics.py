"""Self-BLEU-4 speed: NLTK's sentence_bleu loop, the C++ `fast-bleu` package, and advgen, in one run.

    python benchmarks/metrics.py [--data ../shared/data/coco_test.txt] [--repeats 3]

On the first 1,000 and 5,000 COCO test captions (whitespace tokens, weights (1/4,)*4, NLTK
smoothing method 1, each sentence against all the others). NLTK is timed at 1,000 only (it is
quadratic in pure Python). Prints the ratios and the largest per-sentence difference between the
implementations; the last line is one JSON object.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from advgen.metrics import self_bleu_scores

WEIGHTS = (0.25, 0.25, 0.25, 0.25)


def nltk_self_bleu(sentences: list) -> np.ndarray:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method1
    return np.array([sentence_bleu(sentences[:i] + sentences[i + 1:], h, WEIGHTS, smoothing_function=smooth)
                     for i, h in enumerate(sentences)])


def fast_bleu_self_bleu(sentences: list) -> np.ndarray:
    from fast_bleu import SelfBLEU

    return np.array(SelfBLEU(sentences, {"4": WEIGHTS}).get_score()["4"])


def advgen_self_bleu(sentences: list) -> np.ndarray:
    return self_bleu_scores(sentences, 4)[3]


def timed(fn, sentences: list, repeats: int):
    """-> (scores, median seconds over `repeats` calls)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = fn(sentences)
        times.append(time.perf_counter() - start)
    return scores, statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_test.txt"))
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of fast-bleu and advgen (median kept)")
    args = parser.parse_args()
    lines = [line.split() for line in Path(args.data).read_text().splitlines() if line.strip()]
    try:
        import fast_bleu  # noqa: F401
        have_fast_bleu = True
    except ImportError:
        have_fast_bleu = False
        print("fast-bleu is not installed (pip install fast-bleu): its column is skipped")

    result = {"data": Path(args.data).name, "metric": "self-bleu-4", "sizes": {}}
    for size in [int(s) for s in args.sizes.split(",")]:
        sentences = lines[:size]
        if len(sentences) < size:
            raise SystemExit(f"{args.data} has only {len(lines)} sentences, fewer than {size}")
        row = {}
        ours, row["advgen_s"] = timed(advgen_self_bleu, sentences, args.repeats)
        row["advgen_value"] = float(ours.mean())
        if size <= 1000:
            ref, row["nltk_s"] = timed(nltk_self_bleu, sentences, 1)
            row["nltk_value"] = float(ref.mean())
            row["max_abs_diff_vs_nltk"] = float(np.abs(ref - ours).max())
            row["speedup_vs_nltk"] = row["nltk_s"] / row["advgen_s"]
        if have_fast_bleu:
            fast, row["fast_bleu_s"] = timed(fast_bleu_self_bleu, sentences, args.repeats)
            row["fast_bleu_value"] = float(fast.mean())
            row["max_abs_diff_vs_fast_bleu"] = float(np.abs(fast - ours).max())
            row["speedup_vs_fast_bleu"] = row["fast_bleu_s"] / row["advgen_s"]
        result["sizes"][str(size)] = row
        print(f"n={size}: advgen {row['advgen_s']:.3f} s (Self-BLEU-4 {row['advgen_value']:.6f})")
        if "nltk_s" in row:
            print(f"  NLTK loop  {row['nltk_s']:.2f} s -> advgen is {row['speedup_vs_nltk']:.0f}x faster;"
                  f" largest per-sentence difference {row['max_abs_diff_vs_nltk']:.1e}")
        if "fast_bleu_s" in row:
            print(f"  fast-bleu  {row['fast_bleu_s']:.3f} s -> advgen is {row['speedup_vs_fast_bleu']:.1f}x faster;"
                  f" largest per-sentence difference {row['max_abs_diff_vs_fast_bleu']:.1e}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
