"""Multi-task learning: several named tasks (``tasks:``) on one shared encoder, one head each, trained together.

``sampling.py`` decides which task each batch comes from (proportional, temperature, round-robin, annealed);
``balance.py`` weighs the task losses (fixed, uncertainty weighting, PCGrad) and measures gradient conflict;
``model.py`` holds the shared encoder and the heads, saves and reloads them as one folder; ``trainer.py`` is a
small Trainer subclass that feeds one task per batch; ``stages.py`` is the run, a list of stages like run.py's,
reusing every task's own data pipeline, encoding, baselines and evaluation.
"""
