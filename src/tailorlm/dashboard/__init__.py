"""The run index (``tailor runs``) and the local web dashboard (``tailor dashboard``).

``index.py`` finds every run directory, tune study and comparison under a folder by reading only their small
files (status.json, metrics.json, tune.json), so listing hundreds of runs takes well under a second and imports
neither torch nor transformers. ``app.py`` serves pages over that index (FastAPI + uvicorn, the stack of
``tailor serve``); ``jobs.py`` validates recipes with the loader ``tailor run`` uses and runs them as
subprocesses; ``reviewing.py`` puts ``tailor review`` / ``tailor apply-review`` behind the review page.
"""
