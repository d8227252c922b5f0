"""The package's structure, read from its source: no import circle, short functions, one owner per concept.
Run alone with `python -m pytest tests/test_layout.py`."""
import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "advgen"
MAX_FUNCTION_LINES = 120


def modules() -> dict:
    """{'advgen.x': parsed tree} for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (path, ast.parse(path.read_text()))
    return out


def imports(name: str, tree: ast.AST, known: set) -> set:
    """The advgen modules a module imports anywhere in its body (function-level imports included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("advgen"):
            if node.module in known and node.module != "advgen":
                found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
    return found - {name, "advgen"}


def graph() -> dict:
    mods = modules()
    return {name: imports(name, tree, set(mods)) for name, (_, tree) in mods.items()}


def test_no_import_circle():
    g = graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(g[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])


def test_leaf_modules_import_nothing_above_them():
    g = graph()
    assert g["advgen.errors"] == set() and g["advgen.seeds"] == set()
    assert g["advgen.config"] <= {"advgen.errors"}, g["advgen.config"]
    assert g["advgen.kernels"] <= {"advgen.errors"}, g["advgen.kernels"]
    # the training loops and commands are on top: nothing below imports them
    top = {"advgen.pretrain", "advgen.adversarial", "advgen.train_scorer", "advgen.evaluate", "advgen.cli"}
    for name, deps in g.items():
        if name not in top | {"advgen.cli", "advgen.__main__"}:
            assert not deps & top, f"{name} imports {deps & top}"


def test_no_long_function():
    long = []
    for name, (path, tree) in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long


def defined(name: str) -> list:
    """The modules that define a top-level function or class `name` (advgen.cli's commands aside)."""
    return [mod for mod, (_, tree) in modules().items() if mod != "advgen.cli"
            for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name]


def test_each_concept_has_one_owner():
    owners = {
        # the run folder: layout, config.json, loading, prompts, sampling from a run, create/resume/refuse
        "write_config": "advgen.runs", "read_config": "advgen.runs", "claim": "advgen.runs",
        "open_folder": "advgen.runs", "prompt": "advgen.runs", "sample_rows": "advgen.runs", "sample_texts": "advgen.runs",
        # the sampler: per-step kernels apart from the cache forward and the decode loop
        "Controls": "advgen.kernels", "pick": "advgen.kernels", "nucleus": "advgen.kernels", "draw": "advgen.kernels",
        "generate": "advgen.sampling", "forward_last": "advgen.sampling", "new_cache": "advgen.sampling",
        # teacher-forced log-likelihoods, both of them
        "target_nll": "advgen.models", "teacher_forced_logprobs": "advgen.models",
        # scorer models, the train-scorer command, reward functions
        "Scorer": "advgen.scorers", "load_scorer": "advgen.scorers", "new_discriminator": "advgen.scorers",
        "discriminator_step": "advgen.scorers", "label_of": "advgen.scorers", "label_column": "advgen.scorers",
        "train_scorer": "advgen.train_scorer", "realism": "advgen.rewards", "RewardMixer": "advgen.rewards",
        "sample_run": "advgen.evaluate", "AdvgenError": "advgen.errors", "derive": "advgen.seeds",
    }
    for name, owner in owners.items():
        assert defined(name) == [owner], f"{name} is defined in {defined(name)}, expected only {owner}"


def test_no_function_is_named_like_a_module():
    """advgen.cli's commands are named as the modules that implement them; no other function shares a module's name."""
    names = {name.rsplit(".", 1)[-1] for name in modules()}
    clashes = [f"{mod}.{node.name}" for mod, (_, tree) in modules().items() for node in tree.body
               if isinstance(node, ast.FunctionDef) and node.name in names and mod not in (f"advgen.{node.name}", "advgen.cli")]
    assert not clashes, clashes


def source(name: str) -> str:
    return modules()[name][0].read_text()


def test_prompts_and_rules_are_written_once():
    everything = {name: path.read_text() for name, (path, _) in modules().items()}
    # prompts from a config: only advgen.runs calls data.prompt_ids
    assert [n for n, s in everything.items() if "prompt_ids(" in s] == ["advgen.data", "advgen.runs"]
    # sampling from prompts in batches: only advgen.runs
    assert [n for n, s in everything.items() if "sample_batches(" in s] == ["advgen.runs", "advgen.sampling"]
    # the sentiment-from-rating rule
    assert [n for n, s in everything.items() if re.search(r"""["']sentiment["'] not in""", s)] == ["advgen.scorers"]


def test_seed_streams_are_named():
    """No seed arithmetic (seed + 1, seed * 1_000_003 + step) outside advgen.seeds, but pretrain's data order."""
    pattern = re.compile(r"seed\s*[*+]\s*[\w(]")
    for name, (path, _) in modules().items():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not (name == "advgen.data" and "100_003" in line):
                raise AssertionError(f"{path.name}:{number} derives a seed by arithmetic: {line.strip()}")
