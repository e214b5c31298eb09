"""Experiment tracking: a finished (or failed) run copied into MLflow, so many runs can be searched and compared.

``tracking.mlflow: true`` (``tailor run --track``) turns it on. ``run.run`` calls ``start_tracking`` before any
work (MLflow installed, store reachable) and logs the run directory when it ends; ``tracked_group`` makes the
runs of ``--seeds``, k-fold and ``tailor tune`` children of one parent run. Params, metrics and tags are derived
from the run directory's files in ``flatten.py``; ``mlflow.py`` talks to MLflow.
"""

from __future__ import annotations

from tailorlm.track.mlflow import NOT_INSTALLED, Tracker, note_trial, start_tracking, tracked_group

__all__ = ["NOT_INSTALLED", "Tracker", "note_trial", "start_tracking", "tracked_group"]
