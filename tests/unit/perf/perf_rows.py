"""Where the published rows live and how the tests read them."""

from __future__ import annotations

import csv
from pathlib import Path

from gpumodel.perf.validation import PublishedRow

REPO_ROOT = Path(__file__).resolve().parents[3]
COMMITTED_CSV = REPO_ROOT / "validation" / "published.csv"
SHARED_CSV = REPO_ROOT / ".." / "shared" / "validation" / "published.csv"


def load_rows(path: Path) -> list[PublishedRow]:
    with path.open(newline="") as handle:
        return [PublishedRow.from_cells(cells) for cells in csv.DictReader(handle)]
