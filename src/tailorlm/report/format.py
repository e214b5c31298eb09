"""How the report writes numbers: fixed digits, a true minus sign, '—' for anything missing or not finite.

Shared by both renderers, the section modules, the model card and the tune report, so a value reads the same
wherever it appears.
"""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(metrics: dict[str, Any] | None, key: str) -> float | None:
    """A finite metric value, or None: NaN (e.g. ECE on an empty split) must never win a comparison."""
    if not metrics:
        return None
    value = metrics.get(key)
    return float(value) if finite(value) else None


def fmt(value: Any, digits: int = 3) -> str:
    """A metric as text; '—' for missing or NaN so tables never show 'nan' or 'None'."""
    return f"{value:.{digits}f}" if finite(value) else "—"


def signed(value: float, digits: int = 3) -> str:
    """A difference with its sign, using a true minus so it reads well in prose."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", "\u2212")


def percent(share: float) -> str:
    """A share as a percentage that never rounds a small non-zero share (LoRA's tuned weights) to 0.0%."""
    if 0 < share < 0.001:
        return f"{share:.3%}" if share >= 0.00001 else "<0.001%"
    return f"{share:.1%}"


def count(value: Any) -> str:
    """An integer with thousands separators, '—' when missing."""
    return f"{int(value):,}" if finite(value) else "—"


def duration(seconds: Any) -> str:
    """Seconds as '2 min 0 s' / '1 h 3 min' / '12.4 s'."""
    if not finite(seconds):
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def looks_like_path(name: str) -> bool:
    """A model or file named by a path on this machine (absolute, ./, ../, ~, or a folder that exists here)."""
    from pathlib import Path

    return name.startswith(("/", ".", "~", "\\")) or (len(name) > 1 and name[1] == ":") or Path(name).exists()


def model_label(name: str, base: str | None = None) -> str:
    """How a report or card names a model: an alias or hub id as written, a local folder by its own name (never
    this machine's path), with the hub id or base it came from when that says more."""
    from pathlib import Path

    shown = f"{Path(name.rstrip('/')).name} (a local folder)" if looks_like_path(name) else name
    if base and base != name and not looks_like_path(base):
        shown += f" ({base})"
    return shown
