"""`make paper`: every figure and table of paper/ from the committed logs, without training; then the tables
quoted in paper.md are refreshed from paper/tables/ (between `<!-- table NAME -->` and `<!-- end NAME -->`).

    python experiments/paper.py [--runs paper/runs] [--out paper]

--runs holds one folder of logs per benchmark (coco: experiments/run.py's, ecommerce: experiments/ecommerce.py's);
each benchmark's scripts read its folder, and a benchmark without a folder there is skipped (and said so).
"""
import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {"coco": ["table1.py", "table2.py", "table3.py", "table4.py", "table5.py", "table10.py", "table11.py",
                     "table12.py", "figure1.py", "figure2.py"],
           "ecommerce": ["table6.py", "table7.py", "table8.py", "table9.py", "table13.py", "table14.py", "table15.py",
                         "figure3.py", "figure4.py", "figure5.py"]}
BLOCK = re.compile(r"(<!-- table (?P<name>[\w-]+) -->\n)(?:.*?\n)?(<!-- end (?P=name) -->)", re.S)


def refresh_tables(paper: Path, tables: Path) -> None:
    """Replace each quoted table of `paper` by the current tables/<name>.md (one that does not exist, of a
    benchmark skipped, is left as it is)."""
    text = paper.read_text()

    def table(match):
        source = tables / f"{match['name']}.md"
        if not source.is_file():
            print(f"paper.md: {match['name']} not refreshed, {source} does not exist")
            return match[0]
        return match[1] + source.read_text().strip() + "\n" + match[3]

    paper.write_text(BLOCK.sub(table, text))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=str(HERE.parent / "paper" / "runs"), help="one folder of logs per benchmark")
    parser.add_argument("--out", default=str(HERE.parent / "paper"), help="writes OUT/figures and OUT/tables")
    args = parser.parse_args()
    started, count = time.time(), 0
    for benchmark, scripts in SCRIPTS.items():
        logs = Path(args.runs) / benchmark
        if not logs.is_dir():
            print(f"paper: no logs of {benchmark} in {logs}: its scripts skipped")
            continue
        for script in scripts:
            subprocess.check_call([sys.executable, str(HERE / script), "--runs", str(logs), "--out", args.out])
            count += 1
    paper = Path(args.out) / "paper.md"
    if paper.is_file():
        refresh_tables(paper, Path(args.out) / "tables")
        print(paper)
    print(f"paper: {count} scripts in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
