"""Hyperparameter search (`tailor tune`, Optuna) and k-fold cross-validation.

- ``space``: the recipe's ``search.space`` checked against the real recipe keys and turned into suggestions;
- ``study``: the persistent Optuna study (``output_dir/study.db``), samplers, pruners and resuming;
- ``storage``: where the study lives (the folder's SQLite file or ``search.storage``), opened for several writers;
- ``spawn`` / ``worker``: ``--workers N``, the processes that share one study and what each runs;
- ``objective``: one trial = one normal pipeline run in ``output_dir/trials/trial-NNN`` with the trial's values
  applied as ``--set`` overrides; intermediate validation scores feed the pruner;
- ``outputs``: trials.csv, tune.json, best_recipe.yaml and tune_report.html;
- ``cv``: ``validation.kfold``: k runs, one per fold, with mean ± std.

Nothing is imported here: ``tailor run`` with k-fold needs ``cv`` without paying for Optuna's import.
"""
