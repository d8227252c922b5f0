"""`make paper`: every figure and table of paper/ from the committed logs, without training; then the tables
quoted in paper.md are refreshed from paper/tables/ (between `<!-- table NAME -->` and `<!-- end NAME -->`).

    python experiments/paper.py [--runs paper/runs/coco] [--out paper]
"""
import re
import subprocess
import sys
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
SCRIPTS = ["table1.py", "table2.py", "table3.py", "table4.py", "table5.py", "figure1.py", "figure2.py"]
BLOCK = re.compile(r"(<!-- table (?P<name>\w+) -->\n)(?:.*?\n)?(<!-- end (?P=name) -->)", re.S)


def refresh_tables(paper: Path, tables: Path) -> None:
    """Replace each quoted table of `paper` by the current tables/<name>.md."""
    text = paper.read_text()

    def table(match):
        return match[1] + (tables / f"{match['name']}.md").read_text().strip() + "\n" + match[3]

    paper.write_text(BLOCK.sub(table, text))


def main():
    args = common.arguments(__doc__.split("\n")[0])
    started = time.time()
    for script in SCRIPTS:
        subprocess.check_call([sys.executable, str(HERE / script), "--runs", args.runs, "--out", args.out])
    paper = Path(args.out) / "paper.md"
    if paper.is_file():
        refresh_tables(paper, Path(args.out) / "tables")
        print(paper)
    print(f"paper: {len(SCRIPTS)} scripts in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
