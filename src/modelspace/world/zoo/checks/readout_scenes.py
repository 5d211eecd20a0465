"""Readout data check: is the oracle's readout held back by its 2 000 training scenes?

The budget rule (`readout_budget.py`) found the readout's validation loss rising from 16 to 32
epochs of the same 2 000 scenes: the readout overfits, so the scenes, not the steps, may be what
limits it. The task models were trained on 10 000 rendered scenes, all cached.

Pre-declared rule (fixed before looking, as the budget rule was): keep the budget's 1 000 Adam
steps at batch 32 and give the readout 2 000, 4 000 or 8 000 of the training scenes (16, 8 or 4
epochs). Measure the budget rule's 40 pairs (per target its own encoder and one other source drawn
with numpy seed 0), readout seed 0, on the 500 *validation* scenes. The oracle's scene count is the
smallest at which doubling it lowers the sample's mean normalised validation loss by under 2 %, or
8 000 if none does. Which source comes first for which target plays no part in the rule. If the rule
asks for more than 2 000, the whole oracle is measured again with it, whatever that shows.

Result (40 pairs): 2 000 -> 4 000 scenes -4.34 %, 4 000 -> 8 000 -1.53 %: the rule asks for 4 000
(8 epochs). The image-classification readouts gain most (mean 0.655 -> 0.550 -> 0.513), the other 36
pairs little (0.324 -> 0.318 -> 0.316). The 2 000 rung repeats the budget check's 16-epoch figures
within 1.3e-4.

    python src/modelspace/world/zoo/checks/readout_scenes.py [THREADS] [WORKER N]   # 3 000 steps a pair

Worker i of N measures every N-th pair into readout_scenes-<i>of<N>.json (one process per core);
without a worker it measures what no file holds yet into readout_scenes.json. Every run resumes
rung by rung and prints the rule's figures over all files.
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from readout_budget import merged_results, sample_pairs, setup

from modelspace.models import load_model
from modelspace.world import labels, oracle, train

HERE = Path(__file__).resolve().parent
SCENES = (2000, 4000, 8000)
STEPS = 1000


def main():
    worker, n_workers, tr, va, specs = setup()
    base = oracle.ReadoutRecipe()
    saved = HERE / ("readout_scenes.json" if n_workers == 1 else f"readout_scenes-{worker}of{n_workers}.json")
    out = json.loads(saved.read_text()) if saved.exists() else {}
    elsewhere = merged_results(skip=saved, stem="readout_scenes")
    mine = [p for i, p in enumerate(sample_pairs(list(labels.TASKS))) if i % n_workers == worker]
    models = {}
    for n in SCENES:
        recipe = replace(base, n_train=n, epochs=STEPS * base.batch // n)
        inputs = {}
        for t in dict.fromkeys(t for t, _ in mine):
            todo = [s for tt, s in mine if tt == t and str(n) not in {**elsewhere, **out}.get(f"{t}<-{s}", {})]
            if not todo:
                continue
            target = oracle.make_target(t, tr, va, n)
            variant = oracle.input_variant(t)
            if variant not in inputs:
                inputs = {variant: (train.task_input(t, tr["rgb"][:n], 0), train.task_input(t, va["rgb"], 1))}
            for s in todo:
                if s not in models:
                    models[s] = load_model(specs[s])
                t0 = time.time()
                feats = oracle.standardise(*(oracle.frozen_features(models[s], x) for x in inputs[variant]))
                row = out.setdefault(f"{t}<-{s}", dict(elsewhere.get(f"{t}<-{s}", {})))
                row[str(n)] = oracle.readout_loss(target, feats, recipe, 0)
                row[f"s{n}"] = round(time.time() - t0, 1)
                saved.write_text(json.dumps(out, indent=1))
                print(t, s, n, row[str(n)], row[f"s{n}"], file=sys.stderr, flush=True)
    every = merged_results(stem="readout_scenes")
    for a, b in zip(SCENES, SCENES[1:]):
        keys = [k for k, v in every.items() if str(a) in v and str(b) in v]
        la, lb = np.mean([every[k][str(a)] for k in keys]), np.mean([every[k][str(b)] for k in keys])
        print(f"{a}->{b} scenes over {len(keys)} pairs: mean val loss {la:.4f} -> {lb:.4f}, gain {(la - lb) / la:.2%}; "
              f"pairs gaining >2%: {sum((every[k][str(a)] - every[k][str(b)]) / every[k][str(a)] > 0.02 for k in keys)}")


if __name__ == "__main__":
    main()
