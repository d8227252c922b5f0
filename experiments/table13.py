"""Table 13: the titles frontier at matched quality. Table 12's reading (issue 20's goal) of Figure 5's temperature
sweeps on product titles: each adversarial run (realism only, and each remedy of issue 20 on the realism row)
paired with the MLE run it started from, Self-BLEU-4 compared at matched BLEU-4 against the test titles.

Titles reach lower BLEU-4 than captions (about 0.08 to 0.32 over temperatures 0.5-1.5), so the grid is finer than
table 3's: every 0.02 from 0.10 to 0.30, and the difference is quoted at 0.20, about MLE's BLEU-4 at temperature 1.
"""
from pathlib import Path

import numpy as np

import common
from figure5 import MODELS
from table12 import NOTE, goal_rows, header

GRID = np.round(np.arange(0.10, 0.31, 0.02), 2)
AT = 0.20


def main():
    args = common.arguments(__doc__.split("\n")[0], "ecommerce")
    sweeps = common.sweeps(Path(args.runs), list(MODELS), every_instance=True, bench="titles")
    rows = goal_rows(sweeps, "test titles", {m: label for m, (label, _) in MODELS.items()}, GRID, AT)
    print(common.write_table(args.out, "table13", header(AT), rows, NOTE.format(grid="every 0.02 from 0.10 to 0.30")))


if __name__ == "__main__":
    main()
