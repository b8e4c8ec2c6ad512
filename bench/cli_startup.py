"""How long the ``dgxsim`` command takes to answer: ``--help`` and one ``predict``.

Start-up is what a person at a terminal feels on every command, and a
prediction takes milliseconds, so the interpreter and the imports are most of
the wall time. Each command runs in a fresh subprocess (as a user runs it) N
times; the median and the spread are printed, with the cost of a bare
``python -c pass`` as the floor no change to dgxsim can go below. Prints figures
only; nothing here passes or fails.

    .venv/bin/python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, list[str]] = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "dgxsim --help": [sys.executable, "-m", "dgxsim", "--help"],
    "dgxsim predict gemm": [sys.executable, "-m", "dgxsim", "predict", "--workload", "gemm",
                            "--gpu", "a100-40gb", "--precision", "fp16", "--param", "m=4096"],
}


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs of ``argv``, after one unmeasured run that warms the
    file cache and writes any missing bytecode."""
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    runs = parser.parse_args().runs
    print(f"{'command':<26} {'median':>9} {'min':>9} {'max':>9}  ({runs} runs each)")
    for label, argv in COMMANDS.items():
        times = wall_times(argv, runs)
        print(f"{label:<26} {statistics.median(times) * 1e3:>7.0f}ms "
              f"{min(times) * 1e3:>7.0f}ms {max(times) * 1e3:>7.0f}ms")


if __name__ == "__main__":
    main()
