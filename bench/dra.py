"""ResourceSlice bytes a DRA node publishes, per mode and node kind.

Prints, for a fresh DGX A100 node of each kind: the number of slices and
devices and the JSON bytes of the slices' specs in static mode (whole GPUs, and
all-1g.5gb MIG devices) and dynamic mode (every MIG slot under shared counters).
Run: ``.venv/bin/python bench/dra.py``.
"""

from __future__ import annotations

import json

from dgxnode.node import SimNode
from gpumodel.dra import slice_specs
from gpumodel.vocabulary import NODE_KINDS


def _measure(specs: list[dict[str, object]]) -> tuple[int, int, int]:
    devices = sum(len(s.get("devices") or []) for s in specs)  # type: ignore[arg-type]
    return len(specs), devices, len(json.dumps(specs, separators=(",", ":")))


def main() -> None:
    print(f"{'kind':<16} {'mode':<22} {'slices':>6} {'devices':>7} {'bytes':>9}")
    for kind in NODE_KINDS:
        node = SimNode.create("dgx-0", kind)
        rows = [("static (whole GPUs)", slice_specs(node.inventory(), "static"))]
        node.apply("all-1g.5gb" if kind.endswith("320gb") else "all-1g.10gb")
        rows.append(("static (all 1g MIG)", slice_specs(node.inventory(), "static")))
        fresh = SimNode.create("dgx-0", kind)
        rows.append(("dynamic (every slot)", slice_specs(fresh.inventory(), "dynamic")))
        base = _measure(rows[0][1])[2]
        for mode, specs in rows:
            count, devices, size = _measure(specs)
            print(f"{kind:<16} {mode:<22} {count:>6} {devices:>7} {size:>9,} "
                  f"({size / base:.1f}x whole)")


if __name__ == "__main__":
    main()
