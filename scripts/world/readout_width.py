"""Readout capacity check: is the oracle's readout held back by its width?

The oracle's own-encoder readouts stay far above the task models' own held-out losses (normals
0.191 against 0.058, edges2d 0.133 against 0.020), so the readout, not the encoder, may bound what
the oracle sees. Its two 3×3 convolutions have 32 channels, half of R's 64.

Pre-declared rule (fixed before looking, as the budget and scenes rules were): keep the oracle's
recipe (4 000 training scenes, 8 epochs, batch 32, learning rate 2e-3) and train readouts 32, 64
or 128 channels wide on the budget rule's 40 pairs (per target its own encoder and one other
source drawn with numpy seed 0), readout seed 0, scored on the 500 *validation* scenes. The width is
the smallest at which doubling it lowers the sample's mean normalised validation loss by under 2 %,
or 128 if none does; the 128 rung is measured only when 32 -> 64 gains 2 % or more. Which source
comes first for which target plays no part in the rule. If the rule asks for more than 32, the
whole oracle is measured again with it, whatever that shows.

Width 32 is the oracle's recipe itself, so its figures are the scenes check's 4 000 rung
(`records/readout_scenes.json`, the same pairs, seed and scenes), copied, not measured again.

Result (40 pairs): 32 -> 64 channels +0.49 % (0.3412 -> 0.3429): the rule keeps 32, and 128 is not
measured. The own-encoder pairs moved +0.40 %, the others +0.54 %; 20 of the 40 pairs came out lower
at 64. 11 s a readout at width 64 on one thread.

    python scripts/world/readout_width.py [THREADS] [WORKER N]

Worker i of N measures every N-th pair into records/readout_width-<i>of<N>.json (one process per core);
without a worker it measures what no file holds yet into records/readout_width.json. Every run resumes
rung by rung and prints the rule's figures over all files.
"""
import json
from dataclasses import replace

from readout import gain, measure_rungs, merged_results, print_gains, record_path, sample_pairs, setup

from modelspace.world import labels, oracle

WIDTHS = (32, 64, 128)
GAIN = 0.02


def rungs(rows: dict, n_pairs: int) -> tuple[int, ...]:
    """The widths the rule still needs: 128 only once 32 -> 64 is complete and gains `GAIN` or more."""
    n, la, lb = gain(rows, 32, 64)
    return WIDTHS if n == n_pairs and (la - lb) / la >= GAIN else WIDTHS[:2]


def main():
    worker, n_workers, tr, va, specs = setup()
    recipe = oracle.ReadoutRecipe()
    pairs = sample_pairs(list(labels.TASKS))
    saved = record_path("readout_width", worker, n_workers)
    out = json.loads(saved.read_text()) if saved.exists() else {}
    for key, row in merged_results("readout_scenes").items():
        out.setdefault(key, {}).setdefault("32", row["4000"])
    mine = [p for i, p in enumerate(pairs) if i % n_workers == worker]
    widths = rungs(merged_results("readout_width"), len(pairs))
    measure_rungs(mine, {w: replace(recipe, width=w) for w in widths}, saved, out,
                  merged_results("readout_width", skip=saved), tr, va, specs)
    print_gains(merged_results("readout_width"), WIDTHS, "channels")


if __name__ == "__main__":
    main()
