"""Augmented copies of training rows (the ``augment`` recipe section): token edits (``eda.py``), the stage that
adds them to the training split leak-free (``stage.py``) and the gate that keeps them only when they help
(``gate.py``)."""
