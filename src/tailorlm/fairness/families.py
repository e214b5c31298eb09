"""Counterfactual families: named lists of term pairs, one per axis (gender, race-associated names, nationality,
religion, age), shipped as YAML in ``fairness/terms/`` with their sources, plus the recipe's own
(``fairness.swap_families``).

A family file holds ``axis`` (what the swap probes), ``source`` (where the terms come from), ``pairs``
([a, b] swapped both ways) and optionally ``include`` (families whose pairs are swapped with it: the gendered names
carry the gender terms, so a name and its pronouns change together). A term written with a capital
(``Adam``, ``Christian``) matches only capitalised occurrences, so the name "Jack" is swapped and a car jack is not.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

TERMS_DIR = Path(__file__).parent / "terms"


@cache
def builtin_families() -> dict[str, dict[str, Any]]:
    """Every shipped family by name (the file's stem): axis, source, pairs, include."""
    import yaml

    families = {}
    for path in sorted(TERMS_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        families[path.stem] = {"axis": data["axis"], "source": data["source"], "include": data.get("include", []),
                               "pairs": [(str(a), str(b)) for a, b in data["pairs"]]}
    return families


def family_names() -> list[str]:
    return list(builtin_families())


def resolve_family(name: str, custom: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """One family with its included families' pairs appended after its own: ``{name, axis, source, pairs}``."""
    custom = custom or {}
    if name in custom:
        return {"name": name, "axis": name, "source": "the recipe (fairness.swap_families)",
                "pairs": [(str(a), str(b)) for a, b in custom[name]]}
    family = builtin_families()[name]
    pairs = list(family["pairs"])
    for included in family["include"]:
        pairs += resolve_family(included, custom)["pairs"]
    return {"name": name, "axis": family["axis"], "source": family["source"], "pairs": pairs}


def resolve_families(setting: list[list[str]] | list[str] | str, custom: dict[str, list[list[str]]] | None = None,
                     ) -> list[dict[str, Any]]:
    """``fairness.counterfactual`` as families: a family name, a list of them, pairs (one family ``custom``), none."""
    if setting == "none" or setting == []:
        return []
    if isinstance(setting, str):
        return [resolve_family(setting, custom)]
    if all(isinstance(item, str) for item in setting):
        return [resolve_family(str(name), custom) for name in setting]
    return [{"name": "custom", "axis": "custom", "source": "the recipe (fairness.counterfactual)",
             "pairs": [(str(a), str(b)) for a, b in setting]}]
