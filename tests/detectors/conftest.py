"""A Vigil without its own detector thread: detector tests drive the runner over past buckets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RunningVigil, start_vigil, stop_vigil
from vigil.settings import load_settings


@pytest.fixture
def quiet_vigil(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    running, thread = start_vigil(load_settings(**vigil_settings, detectors_enabled=False))
    try:
        yield running
    finally:
        stop_vigil(running, thread)
