"""Fixtures of the performance-model tests: the published rows, parsed once."""

from __future__ import annotations

import pytest
from perf_rows import COMMITTED_CSV, load_rows

from gpumodel.perf.validation import PublishedRow


@pytest.fixture(scope="session")
def published_rows() -> list[PublishedRow]:
    return load_rows(COMMITTED_CSV)
