"""Reading the YAML files Vigil is configured with (SLOs, alert rules): one parse, errors with the file.

Both the document and its node tree are returned, from a single parse: the tree carries the line
of every entry, so an invalid entry can be reported as ``file:line: reason``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from vigil.errors import ConfigError

__all__ = ["read_yaml"]


def read_yaml(path: str, setting: str) -> tuple[Any, Any]:
    """(root node, document) of the YAML file at `path`; ConfigError naming `setting` or the file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        return root, (None if root is None else loader.construct_document(root))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
