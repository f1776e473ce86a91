"""Edit a params file in place by dotted keys (tests that run the workflow on tiny budgets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def edit_params(path: Path, section: str, changes: dict[str, Any]) -> None:
    """Set ``section.<dotted key>`` to each value of ``changes`` in the YAML file ``path``."""
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data[section]
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
