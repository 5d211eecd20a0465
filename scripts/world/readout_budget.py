"""Readout budget check: does the oracle's readout converge within its budget?

Pre-declared rule (fixed before looking): sample, per target, its own encoder and one other source
drawn with numpy seed 0; train one readout (seed 0) per pair at 8, 16 and 32 epochs on the same
2000 training scenes; score on the 500 *validation* scenes (never the test scenes the oracle
reports). The budget is the smallest at which doubling it lowers the mean normalised validation
loss of the sample by under 2 %, the criterion the task models are held to. The ladder goes on
to 64 epochs because the first 5 pairs measured still gained more than that from 16 to 32.

Result (40 pairs): 8 -> 16 epochs -4.9 %, 16 -> 32 +4.0 %, 32 -> 64 +7.5 %: the rule asks for 16.

    python scripts/world/readout_budget.py [THREADS] [WORKER N]   # 120 readout epochs a pair

Worker i of N measures every N-th pair into records/readout_budget-<i>of<N>.json (one process per core);
without a worker it measures what no file holds yet into records/readout_budget.json. Every run resumes
rung by rung and prints the rule's figures over all files.
"""
import json
from dataclasses import replace

from readout import measure_rungs, merged_results, print_gains, record_path, sample_pairs, setup

from modelspace.world import labels, oracle

EPOCHS = (8, 16, 32, 64)


def main():
    worker, n_workers, tr, va, specs = setup()
    pairs = sample_pairs(list(labels.TASKS))
    base = replace(oracle.ReadoutRecipe(), n_train=2000)  # the scenes this rule was measured on
    saved = record_path("readout_budget", worker, n_workers)
    out = json.loads(saved.read_text()) if saved.exists() else {}
    mine = [p for i, p in enumerate(pairs) if i % n_workers == worker]
    measure_rungs(mine, {e: replace(base, epochs=e) for e in EPOCHS}, saved, out,
                  merged_results("readout_budget", skip=saved), tr, va, specs)
    print_gains(merged_results("readout_budget"), EPOCHS, "epochs")


if __name__ == "__main__":
    main()
