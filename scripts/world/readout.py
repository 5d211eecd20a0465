"""What the readout checks share: their command line, the sampled pairs, the measurement of a ladder of
readout recipes (resumable, rung by rung) and the reading of their records.

Each check (`readout_budget.py`, `readout_scenes.py`, `readout_width.py`) states its rule, fixed
before its results were seen, in its own docstring; this module holds none of their choices.
Records go to `records/` beside these scripts.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from modelspace.models import load_model, load_zoo
from modelspace.world import build, oracle, train

RECORDS = Path(__file__).resolve().parent / "records"


def setup() -> tuple[int, int, dict, dict, dict]:
    """A check's command line ([THREADS] [WORKER N]) applied, then the cached training and validation
    scenes and the zoo's specs: (worker, workers, train, validation, specs)."""
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    worker, n_workers = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (0, 1)
    cache = Path.home() / ".cache/modelspace/world"
    tr = build.render_set(build.SCENES["train"], build.SEEDS["train"], "train", cache)
    va = build.render_set(build.SCENES["validation"], build.SEEDS["validation"], "train", cache)
    specs = {s.name: s for s in load_zoo(str(build.ZOO_DIR / "zoo.toml"))}
    return worker, n_workers, tr, va, specs


def sample_pairs(tasks: list[str]) -> list[tuple[str, str]]:
    """Per target: (target, own encoder) and (target, one other source drawn with numpy seed 0)."""
    rng = np.random.default_rng(0)
    pairs = []
    for t in tasks:
        other = [s for s in tasks if s != t]
        pairs += [(t, t), (t, other[rng.integers(len(other))])]
    return pairs


def record_path(stem: str, worker: int, n_workers: int) -> Path:
    """Where a worker keeps its measurements: `stem`.json alone, `stem`-<i>of<N>.json as worker i of N."""
    return RECORDS / (f"{stem}.json" if n_workers == 1 else f"{stem}-{worker}of{n_workers}.json")


def merged_results(stem: str, skip: Path | None = None) -> dict:
    """Every measured pair over all of a check's records (`stem`*.json), rung by rung."""
    rows: dict = {}
    for path in RECORDS.glob(f"{stem}*.json"):
        if path != skip:
            for k, v in json.loads(path.read_text()).items():
                rows.setdefault(k, {}).update(v)
    return rows


def measure_rungs(mine: list[tuple[str, str]], recipes: dict[int, oracle.ReadoutRecipe], saved: Path, out: dict,
                  elsewhere: dict, tr: dict, va: dict, specs: dict) -> None:
    """Train readout seed 0 of each (target, source) pair in `mine` at every rung (`recipes`: rung ->
    recipe) that neither `out` nor `elsewhere` holds yet, on the recipe's first `n_train` training
    scenes; score it on the validation scenes and save `out` into `saved` after each readout."""
    models = {}
    for t in dict.fromkeys(t for t, _ in mine):
        for rung, recipe in recipes.items():
            todo = [s for tt, s in mine if tt == t and str(rung) not in {**elsewhere, **out}.get(f"{t}<-{s}", {})]
            if not todo:
                continue
            n = recipe.n_train
            target = oracle.make_target(t, tr, va, n)
            inputs = (train.task_input(t, tr["rgb"][:n], 0), train.task_input(t, va["rgb"], 1))
            for s in todo:
                if s not in models:
                    models[s] = load_model(specs[s])
                t0 = time.time()
                feats = oracle.standardise(*(oracle.frozen_features(models[s], x) for x in inputs))
                row = out.setdefault(f"{t}<-{s}", dict(elsewhere.get(f"{t}<-{s}", {})))
                row[str(rung)] = oracle.readout_loss(target, feats, recipe, 0)
                row[f"s{rung}"] = round(time.time() - t0, 1)
                saved.write_text(json.dumps(out, indent=1))
                print(t, s, rung, row[str(rung)], row[f"s{rung}"], file=sys.stderr, flush=True)


def gain(rows: dict, a: int, b: int) -> tuple[int, float, float]:
    """(pairs measured at both rungs, mean loss at `a`, mean loss at `b`)."""
    keys = [k for k, v in rows.items() if str(a) in v and str(b) in v]
    if not keys:
        return 0, float("nan"), float("nan")
    return len(keys), float(np.mean([rows[k][str(a)] for k in keys])), float(np.mean([rows[k][str(b)] for k in keys]))


def print_gains(rows: dict, rungs: tuple[int, ...], unit: str) -> None:
    """The rule's figures: per step of the ladder, the sampled pairs' mean validation loss and its gain."""
    for a, b in zip(rungs, rungs[1:]):
        n, la, lb = gain(rows, a, b)
        if n:
            over = sum((rows[k][str(a)] - rows[k][str(b)]) / rows[k][str(a)] > 0.02
                       for k, v in rows.items() if str(a) in v and str(b) in v)
            print(f"{a}->{b} {unit} over {n} pairs: mean val loss {la:.4f} -> {lb:.4f}, gain {(la - lb) / la:.2%}; "
                  f"pairs gaining >2%: {over}")
