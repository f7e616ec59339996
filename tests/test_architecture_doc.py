"""docs/ARCHITECTURE.md names only modules, classes and functions that exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: ModuleType | Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(dotted)


def test_every_dotted_name_in_the_architecture_doc_exists() -> None:
    names = set(re.findall(r"`((?:gateway|medshield_tools)(?:\.[A-Za-z_]\w*)+)", DOC.read_text(encoding="utf-8")))
    assert len(names) > 30
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"docs/ARCHITECTURE.md names what does not exist: {missing}"
