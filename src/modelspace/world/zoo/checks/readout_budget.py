"""Readout budget check: does the oracle's readout converge within its budget?

Pre-declared rule (fixed before looking): sample, per target, its own encoder and one other source
drawn with numpy seed 0; train one readout (seed 0) per pair at 8, 16 and 32 epochs on the same
2000 training scenes; score on the 500 *validation* scenes (never the test scenes the oracle
reports). The budget is the smallest at which doubling it lowers the mean normalised validation
loss of the sample by under 2 %, the criterion the task models are held to. The ladder goes on
to 64 epochs because the first 5 pairs measured still gained more than that from 16 to 32.

Result (40 pairs): 8 -> 16 epochs -4.9 %, 16 -> 32 +4.0 %, 32 -> 64 +7.5 %: the rule asks for 16.

    python src/modelspace/world/zoo/checks/readout_budget.py [THREADS] [WORKER N]   # 120 readout epochs a pair

Worker i of N measures every N-th pair into readout_budget-<i>of<N>.json (one process per core);
without a worker it measures what no file holds yet into readout_budget.json. Every run resumes
rung by rung and prints the rule's figures over all files.
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from modelspace.models import load_model, load_zoo
from modelspace.world import build, labels, oracle, train

HERE = Path(__file__).resolve().parent
EPOCHS = (8, 16, 32, 64)


def main():
    worker, n_workers, tr, va, specs = setup()
    pairs = sample_pairs(list(labels.TASKS))
    base = replace(oracle.ReadoutRecipe(), n_train=2000)  # the scenes this rule was measured on
    saved = HERE / ("readout_budget.json" if n_workers == 1 else f"readout_budget-{worker}of{n_workers}.json")
    out = json.loads(saved.read_text()) if saved.exists() else {}
    mine = [p for i, p in enumerate(pairs) if i % n_workers == worker]
    measure_rungs(mine, {e: replace(base, epochs=e) for e in EPOCHS}, saved, out, merged_results(skip=saved),
                  tr, va, specs)
    every = merged_results()
    for a, b in zip(EPOCHS, EPOCHS[1:]):
        keys = [k for k, v in every.items() if str(a) in v and str(b) in v]
        la, lb = np.mean([every[k][str(a)] for k in keys]), np.mean([every[k][str(b)] for k in keys])
        print(f"{a}->{b} epochs over {len(keys)} pairs: mean val loss {la:.4f} -> {lb:.4f}, gain {(la - lb) / la:.2%}; "
              f"pairs gaining >2%: {sum((every[k][str(a)] - every[k][str(b)]) / every[k][str(a)] > 0.02 for k in keys)}")


def measure_rungs(mine: list[tuple[str, str]], recipes: dict[int, oracle.ReadoutRecipe], saved: Path, out: dict,
                  elsewhere: dict, tr: dict, va: dict, specs: dict) -> None:
    """Train readout seed 0 of each (target, source) pair in `mine` at every rung (`recipes`: rung ->
    recipe, all on the same scenes) that neither `out` nor `elsewhere` holds yet; score it on the
    validation scenes and save `out` into `saved` after each readout."""
    n = next(iter(recipes.values())).n_train
    models = {}
    for t in dict.fromkeys(t for t, _ in mine):
        todo = [s for tt, s in mine if tt == t and not all(str(r) in {**elsewhere, **out}.get(f"{t}<-{s}", {}) for r in recipes)]
        if not todo:
            continue
        target = oracle.make_target(t, tr, va, n)
        inputs = (train.task_input(t, tr["rgb"][:n], 0), train.task_input(t, va["rgb"], 1))
        for s in todo:
            if s not in models:
                models[s] = load_model(specs[s])
            feats = oracle.standardise(*(oracle.frozen_features(models[s], x) for x in inputs))
            row = out.setdefault(f"{t}<-{s}", dict(elsewhere.get(f"{t}<-{s}", {})))
            for rung in [r for r in recipes if str(r) not in row]:
                t0 = time.time()
                row[str(rung)] = oracle.readout_loss(target, feats, recipes[rung], 0)
                row[f"s{rung}"] = round(time.time() - t0, 1)
                saved.write_text(json.dumps(out, indent=1))
                print(t, s, rung, row[str(rung)], row[f"s{rung}"], file=sys.stderr, flush=True)


def setup() -> tuple[int, int, dict, dict, dict]:
    """A check's command line ([THREADS] [WORKER N]) applied, then the cached training and validation
    scenes and the zoo's specs: (worker, workers, train, validation, specs)."""
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    worker, n_workers = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (0, 1)
    cache = Path.home() / ".cache/modelspace/world"
    tr = build.render_set(build.SCENES["train"], build.SEEDS["train"], "train", cache)
    va = build.render_set(build.SCENES["validation"], build.SEEDS["validation"], "train", cache)
    specs = {s.name: s for s in load_zoo(str(HERE.parent / "zoo.toml"))}
    return worker, n_workers, tr, va, specs


def sample_pairs(tasks: list[str]) -> list[tuple[str, str]]:
    """Per target: (target, own encoder) and (target, one other source drawn with numpy seed 0)."""
    rng = np.random.default_rng(0)
    pairs = []
    for t in tasks:
        other = [s for s in tasks if s != t]
        pairs += [(t, t), (t, other[rng.integers(len(other))])]
    return pairs


def merged_results(skip: Path | None = None, stem: str = "readout_budget") -> dict:
    """Every measured pair over all of a check's result files (`stem`*.json), rung by rung."""
    rows: dict = {}
    for path in HERE.glob(f"{stem}*.json"):
        if path != skip:
            for k, v in json.loads(path.read_text()).items():
                rows.setdefault(k, {}).update(v)
    return rows


if __name__ == "__main__":
    main()
