"""Table 4: the compute each run took, from its logs: training steps and wall time (summary.json), the sweep's
time (the sum of sweep.csv's per-point seconds) and the FED/MAUVE evaluations' (their reports' seconds).

The device is summary.json's (runs older than that record say "not recorded"; this project's machines without a
GPU have 2 CPU cores). Wall times include whatever else ran on the machine at the time: upper bounds of each run's
own cost.
"""
import json
from pathlib import Path

import common


def main():
    args = common.arguments(__doc__.split("\n")[0])
    rows = []
    for model, by_seed in common.runs_by_model(Path(args.runs), every_instance=True).items():  # every run
        for seed, run in by_seed.items():
            summary = json.loads((run / "summary.json").read_text())
            sweep = common.read_csv(run / "sweep.csv") if (run / "sweep.csv").is_file() else []
            evaluations = [json.loads(p.read_text())["seconds"]["total"] for p in sorted(run.glob("fed-mauve-T*.json"))]
            rows.append([run.name, common.MODELS[model], seed, summary.get("device", "not recorded"), summary["steps"],
                         f"{summary['wall_seconds']:.0f}", f"{sum(r['seconds'] for r in sweep):.0f}", len(sweep),
                         f"{sum(evaluations):.0f}"])
    header = ["run", "model", "seed", "device", "steps", "training wall s", "sweep s", "sweep points",
              "FED/MAUVE s"]
    print(common.write_table(args.out, "table4", header, rows))


if __name__ == "__main__":
    main()
