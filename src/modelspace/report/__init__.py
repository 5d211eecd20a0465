"""The report: one self-contained HTML page of a run.

The page (`page`), its figures (`figures`, `plots`) and inline style and script (`assets`).

    from modelspace.report import from_space, write_report
    write_report(from_space(space, truth="taskonomy"), "out/report.html")
"""

from .page import ReportData, evaluate_views, from_folder, from_space, truth_affinity, write_report

__all__ = ["ReportData", "evaluate_views", "from_folder", "from_space", "truth_affinity", "write_report"]
