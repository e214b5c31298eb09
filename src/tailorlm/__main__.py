"""``python -m tailorlm`` is the ``tailor`` command (``accelerate launch -m tailorlm run ...`` works too)."""

from tailorlm.cli import main

main()
