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

    python scripts/world/readout_scenes.py [THREADS] [WORKER N]   # 3 000 steps a pair

Worker i of N measures every N-th pair into records/readout_scenes-<i>of<N>.json (one process per core);
without a worker it measures what no file holds yet into records/readout_scenes.json. Every run resumes
rung by rung and prints the rule's figures over all files.
"""
import json
from dataclasses import replace

from readout import measure_rungs, merged_results, print_gains, record_path, sample_pairs, setup

from modelspace.world import labels, oracle

SCENES = (2000, 4000, 8000)
STEPS = 1000


def main():
    worker, n_workers, tr, va, specs = setup()
    base = oracle.ReadoutRecipe()
    saved = record_path("readout_scenes", worker, n_workers)
    out = json.loads(saved.read_text()) if saved.exists() else {}
    mine = [p for i, p in enumerate(sample_pairs(list(labels.TASKS))) if i % n_workers == worker]
    recipes = {n: replace(base, n_train=n, epochs=STEPS * base.batch // n) for n in SCENES}  # the same steps
    measure_rungs(mine, recipes, saved, out, merged_results("readout_scenes", skip=saved), tr, va, specs)
    print_gains(merged_results("readout_scenes"), SCENES, "scenes")


if __name__ == "__main__":
    main()
