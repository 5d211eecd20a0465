"""Scoring estimated transferability against a ground-truth transfer ranking.

In five parts:

- `truth`: the ground truth (`GroundTruth`: a measured ranking of source tasks per target) and the
  checks that it can score a zoo;
- `metrics`: P@K, R@K and Spearman's ρ per target and averaged (`evaluate`, `Evaluation`), beside
  the random and oracle references;
- `comparison`: whether one estimator's lead over another is more than chance (a paired bootstrap
  over targets, configured by one `Bootstrap`);
- `pairs`: two estimators side by side, as the seed paper's Figures 3 and 5 compare them (the
  difference matrix, the Correlation–Priority Curve, the agreement of their trees);
- `crossval`: choosing a free parameter by leave-one-target-out cross-validation.

The world's study (`world/which.py`), the report page and its plots call these and compute no
figure of their own.
"""

from .comparison import (BOOTSTRAP, Bootstrap, Comparison, Difference, bootstrap_interval, bootstrap_intervals,
                         compare_estimators, paired_difference, per_target_scores)
from .crossval import CrossValidated, leave_one_target_out
from .metrics import (Curves, Evaluation, evaluate, evaluate_matrices, evaluation_report, format_table, oracle_curves,
                      random_curves, spearman, target_scores)
from .pairs import (NORMALISATION, Comparisons, PairComparison, PriorityCurve, compare_pair, correlation_priority,
                    default_pairs, difference_matrix, normalised, oracle_priority, pair_agreement, pair_comparisons,
                    priority_order, truth_order)
from .truth import BUNDLED, DEFAULT_N_RELEVANT, GroundTruth, check_truth, count_candidates, relevant_for, unmatched_names

__all__ = ["BOOTSTRAP", "BUNDLED", "Bootstrap", "Comparison", "Comparisons", "CrossValidated", "Curves",
           "DEFAULT_N_RELEVANT", "Difference", "Evaluation", "GroundTruth", "NORMALISATION", "PairComparison",
           "PriorityCurve", "bootstrap_interval", "bootstrap_intervals", "check_truth", "compare_estimators",
           "compare_pair", "correlation_priority", "count_candidates", "default_pairs", "difference_matrix", "evaluate",
           "evaluate_matrices", "evaluation_report", "format_table", "leave_one_target_out", "normalised",
           "oracle_curves", "oracle_priority", "pair_agreement", "pair_comparisons", "paired_difference",
           "per_target_scores", "priority_order", "random_curves", "relevant_for", "spearman", "target_scores",
           "truth_order", "unmatched_names"]
