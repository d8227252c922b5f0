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
    print(json.dumps(result))


if __name__ == "__main__":
    main()
