"""A run's stages: ``context.py`` (the RunContext they share, the Stage record), ``runner.py`` (the loop that
runs, times and records them) and one module per group of stages: ``data.py``, ``model.py``, ``training.py``,
``outputs.py``. The order is ``tailorlm/run.py``'s STAGES list."""
