"""Wall time of `advgen evaluate` with every file metric on 10,000 samples against 10,000 references.

    python benchmarks/evaluate.py [--data ../shared/data] [--n 10000]

Samples are the first n COCO captions of coco_train.txt + coco_test.txt, references the last n
(the two files hold 9,999 each, so the sets share 2 captions at n = 10,000). Runs the CLI twice
as a subprocess: with an empty cache (everything embedded), then again (reference embeddings
read from the cache). Prints the per-metric seconds; the last line is one JSON object.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def matmul_gflops() -> float:
    """The machine's fp32 rate on the encoder's largest matmul shape, (3584, 384) @ (384, 1536)."""
    import torch

    x, w = torch.randn(3584, 384), torch.randn(384, 1536)
    x @ w
    start = time.perf_counter()
    for _ in range(20):
        x @ w
    return 20 * 2 * 3584 * 384 * 1536 / (time.perf_counter() - start) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    pool = []
    for name in ("coco_train.txt", "coco_test.txt"):
        pool += [line for line in (Path(args.data) / name).read_text().splitlines() if line.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="advgen-bench-"))
    (tmp / "samples.txt").write_text("\n".join(pool[:args.n]) + "\n")
    (tmp / "references.txt").write_text("\n".join(pool[-args.n:]) + "\n")
    env = {**os.environ, "ADVGEN_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1"}
    result = {"n_samples": args.n, "n_references": args.n, "cpu_threads": os.cpu_count()}
    for label in ("cold", "warm"):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "advgen", "evaluate", str(tmp / "samples.txt"),
                        "--references", str(tmp / "references.txt"), "--out", str(tmp / f"{label}.json")],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        report = json.loads((tmp / f"{label}.json").read_text())
        result[label] = {"wall_s": round(wall, 1), "seconds": report["seconds"]}
        print(f"{label} cache: {wall:.1f} s wall (process start and imports included); inside: "
              + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()))
    result["metrics"] = report["metrics"]
    # The encoder's cost: 6 layers x (4 x 384^2 + 2 x 384 x 1536) multiply-adds = 21.2 MFLOP per token.
    from advgen.metrics import encoder

    tokenizer = encoder()[1]
    count = {name: sum(map(len, tokenizer(texts)["input_ids"])) for name, texts in
             (("samples", pool[:args.n]), ("references", pool[-args.n:]))}
    flop = 2 * 6 * (4 * 384 ** 2 + 2 * 384 * 1536)
    result["encoder_tokens"] = count
    result["encoder_gflops"] = {"cold": round(flop * sum(count.values()) / result["cold"]["seconds"]["embeddings"] / 1e9, 1),
                                "warm": round(flop * count["samples"] / result["warm"]["seconds"]["embeddings"] / 1e9, 1)}
    result["matmul_gflops"] = round(matmul_gflops(), 1)
    print(f"encoder: {count} tokens, {result['encoder_gflops']} GFLOP/s achieved; "
          f"a plain fp32 matmul of its largest shape runs at {result['matmul_gflops']} GFLOP/s on this machine now")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
