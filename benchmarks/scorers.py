"""Scorer throughput: advgen's batched scoring (`scorers.probabilities`) against HF's text-classification
pipeline, the reference a user would otherwise call, on the same model and texts in one run.

    python benchmarks/scorers.py [--scorer runs/scorers/quick-click] [--n 512] [--batch-sizes 16,64,256]

Texts are titles (median 3 words) and reviews (median 59 words) from the embedded corpus's test split,
truncated to 128 tokens. advgen sorts the texts by token length before cutting batches; the pipeline
pads each batch to its longest text in the given order. Prints texts/s per batch size and the ratio;
the last line is one JSON object.
"""
import argparse
import json
import os
import time

import torch
from transformers import pipeline
from transformers.utils import logging as hf_logging

from advgen import data, scorers


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return max(times)  # the slower call: the machine's speed varies from call to call


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scorer", default=None, help="a scorer folder (default: a new MiniLM-L6 discriminator)")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    scorer = scorers.load_scorer(args.scorer) if args.scorer else scorers.new_discriminator("minilm-l6")
    scorer = scorer._replace(info={**scorer.info, "max_length": args.max_length})
    reference = pipeline("text-classification", model=scorer.model, tokenizer=scorer.tokenizer, device=-1, top_k=None)
    test = data.split(data.load_corpus("default"), "test", "product_id")
    print(f"{torch.get_num_threads()} threads, {os.cpu_count()} cores; {scorer.info['model']} "
          f"({sum(p.numel() for p in scorer.model.parameters()) / 1e6:.1f}M parameters), max_length {args.max_length}")

    results = {}
    for field in ("title", "review"):
        texts = [str(r[field]) for r in data.select(test, field)][:args.n]
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            ours = timed(lambda: scorers.probabilities(scorer, texts, bs), args.repeats)
            theirs = timed(lambda: reference(texts, batch_size=bs, truncation=True, max_length=args.max_length),
                           args.repeats)
            row = {"advgen_texts_per_s": len(texts) / ours, "pipeline_texts_per_s": len(texts) / theirs,
                   "speedup": theirs / ours}
            results[f"{field}/bs{bs}"] = row
            print(f"{field:6s} batch {bs:4d}: advgen {row['advgen_texts_per_s']:8.1f} texts/s   "
                  f"pipeline {row['pipeline_texts_per_s']:8.1f} texts/s   ratio {row['speedup']:.2f}x")
        best = max((k for k in results if k.startswith(field)), key=lambda k: results[k]["advgen_texts_per_s"])
        print(f"{field}: best advgen batch size {best.split('bs')[1]} "
              f"({results[best]['advgen_texts_per_s']:.1f} texts/s)")
    # the check that both compute the same thing: P(class 1) of the first texts
    texts = [str(r["review"]) for r in data.select(test, "review")][:16]
    ours = scorers.probabilities(scorer, texts)[:, 1]
    theirs = torch.tensor([next(s["score"] for s in out if s["label"] == scorer.model.config.id2label[1])
                           for out in reference(texts, truncation=True, max_length=args.max_length)])
    results["max_abs_difference"] = (ours - theirs).abs().max().item()
    print(f"largest difference in P(class 1) between advgen and the pipeline: {results['max_abs_difference']:.2e}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
