"""What the figure and table scripts share: reading the committed logs, curves over seeds, writing outputs.

The logs of one benchmark sit in one folder (paper/runs/coco): a folder per run named <benchmark>-<model>-s<seed>
(coco-mle-s0, coco-adv-s1, ...; a seed label <seed>r<k> names the k-th retrain of that seed's MLE generator and the
runs started from it, see mle_instance), each with config.json, metrics.jsonl, summary.json, sweep.csv, samples/ and
fed-mauve-T<t>.json; beside them data-texygen.json and data-fed-mauve.json (the train captions measured as if they
were samples). These scripts read those files only: no training code, no models.
"""
import collections
import csv
import gzip
import io
import json
import math
import re
from pathlib import Path

import numpy as np

MODELS = {"mle": "advgen MLE", "adv": "advgen adversarial", "cold": "adversarial, cold rollouts (ColdGANs)",
          "mleterm": "adversarial + MLE term", "dtarget": "adversarial, target-accuracy discriminator",
          "dense": "adversarial, dense rewards (ScratchGAN)", "ppo": "adversarial, PPO (4 clipped epochs)"}
COLORS = {"mle": "tab:blue", "adv": "tab:red", "cold": "tab:green", "mleterm": "tab:purple", "dtarget": "tab:orange",
          "dense": "tab:brown", "ppo": "tab:olive"}
RUN_NAME = re.compile(r"^(?P<bench>[a-z][a-z0-9]*)-(?P<model>[a-z0-9.-]+)-s(?P<seed>\d+(?:r\d+)?)$")
HELD_OUT = "sweep-held-out.csv"  # a run's BLEU against the held-out train captions, beside its sweep.csv
SAME_MODEL = ("steps", "valid_ppl", "test_ppl")  # summary.json entries that tell two MLE checkpoints apart


def seed_order(label: str) -> tuple:
    """'2' -> (2, 0); '2r1', seed 2's MLE retrained once, -> (2, 1)."""
    seed, _, retrain = str(label).partition("r")
    return int(seed), int(retrain or 0)


def instances(logs, prefix: str, seed: int) -> list:
    """The run folders <prefix>-s<label> in `logs` whose label is `seed` or one of its retrains (<seed>r<k>)."""
    return [path for path in sorted(Path(logs).glob(f"{prefix}-s{seed}*"))
            if RUN_NAME.match(path.name) and seed_order(path.name.rsplit("-s", 1)[1])[0] == seed]


def mle_instance(logs: Path, name: str, seed: int, summary: dict) -> str:
    """The seed label under which an MLE checkpoint (its summary.json) and the runs started from it are logged in
    `logs`: the seed itself when the committed <name>-s<seed> is this checkpoint or there is none yet, else <seed>r<k>
    for the first k whose committed logs are this checkpoint's or absent. Training is deterministic on one machine,
    but the last bits of float arithmetic differ between machines, so a checkpoint trained again elsewhere after
    its work folder was lost is another generator: the runs started from it are paired with it, not the first."""
    label = str(seed)
    for k in range(1, 1000):
        committed = Path(logs) / f"{name}-s{label}" / "summary.json"
        if not committed.is_file():
            return label
        old = json.loads(committed.read_text())
        if all(old.get(key) == summary.get(key) for key in SAME_MODEL):
            return label
        label = f"{seed}r{k}"
    raise SystemExit(f"experiments: no free seed label for {name}-s{seed} in {logs}")


def read_csv(path) -> list:
    """Rows of a CSV file, numbers as floats (the run name and empty cells kept as they are)."""
    rows = list(csv.DictReader(Path(path).open()))
    return [{k: _number(v) if k != "run" else v for k, v in r.items()} for r in rows]


def _number(value):
    try:
        return float(value)
    except ValueError:
        return value


def read_jsonl(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def runs_by_model(folder, models=MODELS, every_instance: bool = False, needs: tuple = (), latest: bool = False,
                  bench: str = None) -> dict:
    """{model: {seed label: run folder}} for the run folders under `folder` (<benchmark>-<model>-s<seed label>, of
    the benchmark `bench` where given: titles or reviews in the e-commerce logs) that hold every file in `needs`, in
    the order of `models` (COCO's MODELS, or the e-commerce settings), each model's runs in seed order. A model's statistics over seeds take one run per seed, its first instance (a retrain of a
    seed's MLE, <seed>r<k>, is not another seed), or with `latest` the latest instance that every model with a run
    of that seed has (the e-commerce tables, whose rows share their MLE generator; each model's own latest where
    they share none); `every_instance` keeps them all, to pair each adversarial run with the MLE of its own label."""
    found = {}
    for path in sorted(Path(folder).iterdir()):
        match = RUN_NAME.match(path.name)
        if (path.is_dir() and match and match["model"] in models and bench in (None, match["bench"])
                and all((path / n).is_file() for n in needs)):
            found.setdefault(match["model"], {})[match["seed"]] = path
    if every_instance:
        return {m: {label: found[m][label] for label in sorted(found[m], key=seed_order)} for m in models if m in found}
    seeds = {model: {} for model in found}  # {model: {seed: its labels of that seed}}
    for model, labels in found.items():
        for label in labels:
            seeds[model].setdefault(seed_order(label)[0], []).append(label)
    shared = {}  # {seed: the labels that every model with a run of that seed has}
    for by_seed in seeds.values():
        for seed, labels in by_seed.items():
            shared[seed] = shared.get(seed, set(labels)) & set(labels)
    chosen = {}
    for model in [m for m in models if m in found]:
        picks = [max(shared[seed] or labels, key=seed_order) if latest else min(labels, key=seed_order)
                 for seed, labels in seeds[model].items()]
        chosen[model] = {label: found[model][label] for label in sorted(picks, key=seed_order)}
    return chosen


def sweeps(folder, models=MODELS, every_instance: bool = False, references: str = "test", bench: str = None,
           latest: bool = False) -> dict:
    """{model: {seed: sweep rows sorted by temperature}} for the runs of `models` that have a sweep.csv (the seeds'
    instances chosen as runs_by_model does). With
    references="held-out", BLEU-n is against the held-out train captions (HELD_OUT, runs without it left out) in
    place of the test captions; every other column is the sweep's."""
    def rows(run: Path) -> list:
        found = read_csv(run / "sweep.csv")
        if references == "held-out":
            bleu = {round(r["temperature"], 6): r for r in read_csv(run / HELD_OUT)}
            found = [{**r, **{k: v for k, v in bleu[round(r["temperature"], 6)].items() if k.startswith("bleu-")}}
                     for r in found]
        return sorted(found, key=lambda r: r["temperature"])

    needs = ("sweep.csv",) + (HELD_OUT,) * (references == "held-out")
    return {model: {seed: rows(run) for seed, run in seeds.items()}
            for model, seeds in runs_by_model(folder, models, every_instance, needs, latest, bench).items()}


def plot_sweeps(ax, by_seed: dict, x: str, y: str, color, label: str) -> None:
    """One model's temperature sweep on `ax`: the mean over seeds at each temperature, bars of one standard
    deviation in both axes where there are several seeds, every other temperature labelled."""
    curves = list(by_seed.values())
    temps = [r["temperature"] for r in curves[0]]
    points = [[at_temperature(c, t) for c in curves] for t in temps]
    (mx, sx), (my, sy) = (np.array([mean_std([p[key] for p in pts]) for pts in points]).T for key in (x, y))
    ax.errorbar(mx, my, xerr=None if np.isnan(sx).all() else sx, yerr=None if np.isnan(sy).all() else sy,
                marker="o", ms=4, capsize=2, color=color, label=f"{label} ({len(curves)} seed{'s' * (len(curves) > 1)})")
    for t, px, py in zip(temps, mx, my):
        if abs(t * 10 - round(t * 10)) < 1e-6 and round(t * 10) % 2 == 1:  # every other temperature
            ax.annotate(f"{t:g}", (px, py), textcoords="offset points", xytext=(5, 3), fontsize=7, color=color)


def read_samples(path) -> list:
    """A committed samples file (samples/T<t>.txt.gz, one sample per line, as the sweep wrote and scored them)."""
    return gzip.decompress(Path(path).read_bytes()).decode().split("\n")[:-1]


def at_temperature(rows: list, t: float) -> dict:
    """The sweep row at temperature t."""
    found = [r for r in rows if math.isclose(r["temperature"], t, abs_tol=1e-6)]
    if not found:
        raise SystemExit(f"no sweep point at temperature {t}")
    return found[0]


def frontier(rows: list, quality: str) -> list:
    """The part of a sweep that is a quality-diversity frontier: the points from the temperature of highest
    `quality` upward, in temperature order. Cooling below that temperature loses quality and diversity both (a
    generator that collapses onto a few captions), so those points are dominated, and leaving them out keeps
    quality monotone along the curve that is interpolated."""
    rows = sorted(rows, key=lambda r: r["temperature"])
    peak = max(range(len(rows)), key=lambda i: rows[i][quality])
    return rows[peak:]


def interpolate_at(rows: list, key: str, value: float, columns: list) -> dict:
    """The sweep's frontier (see `frontier`) linearly interpolated in temperature to where `key` equals `value`: the
    temperature and `columns` there, or None where the frontier does not reach the value."""
    rows = frontier(rows, key)
    ts = np.array([r["temperature"] for r in rows])
    ks = np.array([r[key] for r in rows])
    for i in range(len(rows) - 1):
        lo, hi = sorted((ks[i], ks[i + 1]))
        if lo <= value <= hi and ks[i] != ks[i + 1]:
            w = (value - ks[i]) / (ks[i + 1] - ks[i])
            return {"temperature": ts[i] + w * (ts[i + 1] - ts[i]),
                    **{c: rows[i][c] + w * (rows[i + 1][c] - rows[i][c]) for c in columns}}
    return None


def curve_at(rows: list, x: str, y: str, xs: np.ndarray) -> np.ndarray:
    """y as a function of x along one sweep's frontier (see `frontier`), at xs; NaN outside its range."""
    rows = frontier(rows, x)
    px = np.array([r[x] for r in rows])
    py = np.array([r[y] for r in rows])
    order = np.argsort(px)
    px, py = px[order], py[order]
    out = np.interp(xs, px, py)
    out[(xs < px[0]) | (xs > px[-1])] = np.nan
    return out


def mean_std(values) -> tuple:
    """Mean and sample standard deviation (ddof 1; NaN for one value) of the non-NaN values."""
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def fmt(mean: float, std: float = math.nan, digits: int = 3, spec: str = "f") -> str:
    """'0.305 ± 0.004', or '0.305' for one value; spec "g": `digits` significant digits ('1.21e-06 ± 3.4e-07')."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}{spec}}" if math.isnan(std) else f"{mean:.{digits}{spec}} ± {std:.{digits}{spec}}"


def write_table(out, name: str, header: list, rows: list, note: str = "") -> Path:
    """paper/tables/<name>.md (a Markdown table, with the note below it) and <name>.csv (the same cells)."""
    folder = Path(out) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    md = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    md += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    (folder / f"{name}.md").write_text("\n".join(md) + ("\n\n" + note if note else "") + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    (folder / f"{name}.csv").write_text(buffer.getvalue())
    return folder / f"{name}.md"


def save_figure(fig, out, name: str) -> Path:
    """paper/figures/<name>.png and .pdf (no creation date in the PDF, so unchanged logs give unchanged files)."""
    folder = Path(out) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=150)
    fig.savefig(folder / f"{name}.pdf", metadata={"CreationDate": None})
    return folder / f"{name}.png"


def finish(fig, axes, title: str, out, name: str) -> Path:
    """The legend in the first panel, the title, the layout, and the figure saved (save_figure)."""
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out, name)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def arguments(description: str, benchmark: str = "coco"):
    """--runs (the committed logs of the benchmark: paper/runs/<benchmark>) and --out (the paper folder), the same
    for every script."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    here = Path(__file__).resolve().parent.parent
    parser.add_argument("--runs", default=str(here / "paper" / "runs" / benchmark), help="the benchmark's logs")
    parser.add_argument("--out", default=str(here / "paper"), help="writes OUT/figures and OUT/tables")
    return parser.parse_args()


def group(folder, name: str) -> list:
    """The settings one e-commerce table compares (settings.json's groups: steering, baselines, kl)."""
    return json.loads((Path(folder) / "settings.json").read_text())["groups"][name]


def judged(report, samples) -> dict:
    """An evaluate report's metrics, plus from its samples file what n-gram metrics cannot see of one-word or empty
    texts: 'words' (mean whitespace words per text), 'top-share' and 'top-text' (the most frequent text and the share
    of texts equal to it), 'distinct-texts' (different texts per text), 'one-word' and
    'empty' (the shares of texts of one word and of none)."""
    texts = [r["text"] for r in read_jsonl(samples)]
    counts = collections.Counter(texts)
    top, top_count = counts.most_common(1)[0]
    words = [len(x.split()) for x in texts]
    return dict(json.loads(Path(report).read_text())["metrics"], words=float(np.mean(words)),
                **{"top-share": top_count / len(texts), "top-text": top, "distinct-texts": len(counts) / len(texts),
                   "one-word": words.count(1) / len(texts), "empty": words.count(0) / len(texts)})


def evaluations(folder, models: list, every_instance: bool = False, bench: str = "titles") -> dict:
    """The e-commerce logs (paper/runs/ecommerce): {model: {seed: {temperature: values}}} for the `bench` runs (titles
    or reviews) of `models` (run names' settings, e.g. ["mle", *group(folder, "steering")]), in that order, each
    seed's latest instance (or every instance). values: the eval-T<t>.json metrics, plus
    from the samples-T<t>.jsonl beside it 'words' (mean whitespace words per sample) and 'top-share' (the share of
    samples equal to the most frequent one)."""
    folder = Path(folder)
    found = {}
    for model, by_seed in runs_by_model(folder, models, every_instance, latest=True, bench=bench).items():
        for seed, run in by_seed.items():
            for report in sorted(run.glob("eval-T*.json")):
                t = float(report.stem[len("eval-T"):])
                found.setdefault(model, {}).setdefault(seed, {})[t] = judged(report, run / f"samples-T{t:.2f}.jsonl")
    return found


def final_mean(rows: list, key: str, last: int = 10) -> float:
    """The mean of `key` over the last `last` steps of a metrics.jsonl (rows that have it)."""
    values = [r[key] for r in rows if key in r][-last:]
    return float(np.mean(values)) if values else math.nan


def window_means(rows: list, keys: list, window: int = 10) -> dict:
    """The generator steps of a metrics.jsonl (the rows with policy/loss) -> {"first": [...], "last": [...]}: the
    mean of each of `keys` over the first and over the last `window` steps (NaN without steps)."""
    steps = [r for r in rows if "policy/loss" in r]
    n = min(window, len(steps))
    return {end: [float(np.mean([r[key] for r in part])) if part else math.nan for key in keys]
            for end, part in (("first", steps[:n]), ("last", steps[-n:] if n else []))}
