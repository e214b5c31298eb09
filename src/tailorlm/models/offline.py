"""Whether the Hugging Face Hub can be reached, and which hub models are already on this machine, answered in
well under a second and without importing transformers or huggingface_hub.

A run that names a hub id on an offline machine used to spend a minute on retries before failing; the CLI asks
here first (``precheck.py``), and the model advisor marks what works offline (``advisor.py``).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

#: seconds the connectivity check may take: a reachable hub answers a TCP connect far faster
CONNECT_TIMEOUT_S = 0.6
_TRUE = ("1", "true", "yes", "on")


def offline_by_setting() -> str | None:
    """The environment variable that puts the hub off limits (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE), or None."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"{name}={os.environ[name]} is set"
    return None


def _endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_unreachable(timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the hub cannot be used now (a setting, or no TCP connection within ``timeout``), or None when it can.

    The connect runs in a daemon thread so that a slow DNS lookup cannot hold the caller past ``timeout``."""
    setting = offline_by_setting()
    if setting:
        return setting
    host, port = _endpoint()
    result: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(exc)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        return f"{host} did not answer within {timeout:g} s"
    if result[0] is not None:
        return f"{host} is unreachable ({type(result[0]).__name__})"
    return None


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, by its own rules: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def cached_hub_models() -> list[str]:
    """Hub ids whose config.json is in the local cache (a snapshot of ``models--org--name``), sorted."""
    root = hub_cache_dir()
    if not root.is_dir():
        return []
    found = []
    for folder in root.glob("models--*"):
        if any((snapshot / "config.json").exists() for snapshot in (folder / "snapshots").glob("*")):
            found.append(folder.name.removeprefix("models--").replace("--", "/"))
    return sorted(found)


def is_cached_hub_model(name: str) -> bool:
    return name in cached_hub_models()
