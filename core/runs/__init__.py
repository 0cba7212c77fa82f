"""Runs kept and compared (docs/format.md section 9, docs/runs.md).

- ``store.py``: the run store, a folder of runs (``RunStore``, ``Run``), and where a graph's
  runs are kept (``runs_dir_for``, ``unsaved_runs_dir``);
- ``record.py``: recording a run while it trains (``RunRecorder``);
- ``diff.py``: what differs between two runs (``settings_diff``, ``graph_diff``) and a run's
  automatic label (``run_label``);
- ``sweep.py``: training several variants of a graph, each recorded as a run.

No Qt here.
"""
from core.runs.diff import GraphDiff, flat_settings, graph_diff, run_label, settings_diff
from core.runs.record import RunRecorder
from core.runs.store import RUN_FORMAT, RUN_VERSION, Run, RunStore, runs_dir_for, unsaved_runs_dir

__all__ = ["RUN_FORMAT", "RUN_VERSION", "Run", "RunStore", "runs_dir_for", "unsaved_runs_dir",
           "RunRecorder", "GraphDiff", "flat_settings", "graph_diff", "run_label",
           "settings_diff"]
