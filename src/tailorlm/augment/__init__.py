"""Augmented copies of training rows (the ``augment`` recipe section): one interface (``base.Augmenter``: texts in,
candidate texts out) with a module per method, token edits (``eda.py``), masked-LM substitution (``mlm.py``),
back-translation (``back_translation.py``) and paraphrase by a generator (``paraphrase.py``), picked by
``methods.py``; the stage that adds their copies to the training split leak-free (``stage.py``) and the gate that
keeps them only when they help (``gate.py``)."""
