"""Readout budget check: does the oracle's readout converge within its budget?

Pre-declared rule (fixed before looking): sample, per target, its own encoder and one other source
drawn with numpy seed 0; train one readout (seed 0) per pair at 8, 16 and 32 epochs on the same
2000 training scenes; score on the 500 *validation* scenes (never the test scenes the oracle
reports). The budget is the smallest at which doubling it lowers the mean normalised validation
loss of the sample by under 2 %, the criterion the task models are held to.

    python src/modelspace/world/zoo/checks/readout_budget.py [THREADS]   # 56 readout epochs a pair; writes readout_budget.json
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


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    cache = Path.home() / ".cache/modelspace/world"
    tr = build.render_set(build.SCENES["train"], build.SEEDS["train"], "train", cache)
    va = build.render_set(build.SCENES["validation"], build.SEEDS["validation"], "train", cache)
    specs = {s.name: s for s in load_zoo(str(HERE.parent / "zoo.toml"))}
    tasks = list(labels.TASKS)
    rng = np.random.default_rng(0)
    pairs = []
    for t in tasks:
        other = [s for s in tasks if s != t]
        pairs += [(t, t), (t, other[rng.integers(len(other))])]
    base = oracle.ReadoutRecipe()
    n = base.n_train
    saved = HERE / "readout_budget.json"
    out = json.loads(saved.read_text()) if saved.exists() else {}  # resumes pair by pair
    models = {}
    for t in tasks:
        target = oracle.make_target(t, tr, va, n)
        inputs = (train.task_input(t, tr["rgb"][:n], 0), train.task_input(t, va["rgb"], 1))
        for tt, s in pairs:
            if tt != t or f"{t}<-{s}" in out:
                continue
            if s not in models:
                models[s] = load_model(specs[s])
            feats = oracle.standardise(*(oracle.frozen_features(models[s], x) for x in inputs))
            row = {}
            for epochs in (8, 16, 32):
                t0 = time.time()
                row[str(epochs)] = oracle.readout_loss(target, feats, replace(base, epochs=epochs), 0)
                row[f"s{epochs}"] = round(time.time() - t0, 1)
            out[f"{t}<-{s}"] = row
            print(t, s, row, flush=True)
            (HERE / "readout_budget.json").write_text(json.dumps(out, indent=1))
    keys = list(out)
    for a, b in ((8, 16), (16, 32)):
        a, b = str(a), str(b)  # JSON keys
        la, lb = np.mean([out[k][a] for k in keys]), np.mean([out[k][b] for k in keys])
        print(f"{a}->{b} epochs: mean val loss {la:.4f} -> {lb:.4f}, gain {(la - lb) / la:.3%}; "
              f"pairs gaining >2%: {sum((out[k][a]-out[k][b])/out[k][a] > 0.02 for k in keys)}/{len(keys)}")

if __name__ == "__main__":
    main()
