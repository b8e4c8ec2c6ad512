"""Write sample.csv: a small synthetic pod trace in the Alibaba GPU trace's pod-list format.

dgxsim ships a trace it generates itself (no row is copied from the published
trace) so that tests and the README can replay something realistic in a
couple of wall-clock minutes. The mix follows the shape of
cluster-trace-gpu-v2023's pod list, scaled down to four DGX A100 nodes:

* about half the pods share a GPU (``num_gpu`` 1, ``gpu_milli`` < 1000), with
  shares drawn from the values that trace uses most (a tenth to four fifths);
* about a third ask for one whole GPU, a sixth for 2, 4 or 8 GPUs;
* a few are CPU-only (replay skips them) and a few were never scheduled in
  the "traced" cluster (empty ``scheduled_time``, phase Pending).

Arrivals are a Poisson process (mean gap 15 s) over about 25 minutes, on an
absolute clock starting at 9,900,000 s as the published trace's do; run times
are 2 to 15 minutes. Everything comes from one ``random.Random(SEED)``, so
running this again writes the same file::

    python examples/traces/generate_sample.py            # writes sample.csv beside it
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

SEED = 2023
PODS = 100
START_S = 9_900_000
MEAN_GAP_S = 15.0
COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos",
           "pod_phase", "creation_time", "deletion_time", "scheduled_time")
SHARES_MILLI = (100, 110, 220, 250, 300, 320, 460, 470, 500, 650, 800)


def _request(rng: random.Random) -> tuple[int, int]:
    """(num_gpu, gpu_milli) of one pod."""
    kind = rng.random()
    if kind < 0.05:
        return 0, 0
    if kind < 0.55:
        return 1, rng.choice(SHARES_MILLI)
    if kind < 0.85:
        return 1, 1000
    return rng.choice((2, 2, 4, 4, 8)), 1000


def _row(rng: random.Random, index: int, created: int) -> list[object]:
    num_gpu, gpu_milli = _request(rng)
    gpus = max(num_gpu, 1)
    cpu_milli = rng.choice((4000, 6000, 8000, 12000)) * gpus
    memory_mib = rng.choice((15258, 16384, 30517, 32768)) * gpus
    never_scheduled = rng.random() < 0.04
    scheduled = None if never_scheduled else created + rng.choice((0, 0, 0, 1, 2, 3))
    run_s = rng.randint(60, 180) if never_scheduled else rng.randint(120, 900)
    deleted = (scheduled if scheduled is not None else created) + run_s
    phase = "Pending" if never_scheduled else rng.choice(("Succeeded", "Running", "Running"))
    qos = "BE" if 0 < gpu_milli < 1000 else rng.choice(("LS", "Burstable"))
    return [f"sample-pod-{index:04d}", cpu_milli, memory_mib, num_gpu, gpu_milli, "", qos,
            phase, created, deleted, "" if scheduled is None else scheduled]


def rows(seed: int = SEED, pods: int = PODS) -> list[list[object]]:
    """The trace's rows, in creation order."""
    rng = random.Random(seed)
    created = float(START_S)
    out = []
    for index in range(pods):
        out.append(_row(rng, index, round(created)))
        created += rng.expovariate(1 / MEAN_GAP_S)
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("sample.csv")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
