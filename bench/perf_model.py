"""How fast the performance model answers: predictions per second, cold and repeated.

The operator calls ``predict`` on every placement decision, mostly for the same
few workloads, so the figure that matters is the repeated one (served from the
cache on the frozen request); the cold one is the cost of a new question
(building the operator graph and timing every kernel). Prints figures and
ratios only; nothing here passes or fails.

    .venv/bin/python bench/perf_model.py
"""

from __future__ import annotations

import itertools
import time

from gpumodel.perf import PerfRequest, predict
from gpumodel.perf.calibration import constants
from gpumodel.perf.model import predict_with

WORKLOADS = (("bert-large-inference", "int8"), ("bert-large-pretrain", "fp16"),
             ("resnet50-train", "fp16"), ("resnet50-inference", "int8"), ("gemm", "bf16"),
             ("allreduce", "fp32"), ("gpt-train", "bf16"))
PROFILES = (None, "1g.5gb", "2g.10gb", "3g.20gb", "7g.40gb")


def requests() -> list[PerfRequest]:
    out = []
    for (workload, prec), profile, batch in itertools.product(WORKLOADS, PROFILES, (1, 8, 64)):
        gpus = 1 if profile or not workload.endswith(("train", "allreduce")) else 8
        if profile and workload in ("allreduce", "gpt-train", "bert-large-pretrain",
                                    "resnet50-train"):
            continue
        out.append(PerfRequest(workload=workload, gpu="a100-40gb", gpus_per_node=gpus,
                               mig_profile=profile, precision=prec, batch=batch))
    return out


def rate(fn: object, items: list[object], repeat: int) -> float:
    call = fn  # a callable taking one request
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            call(item)  # type: ignore[operator]
    return repeat * len(items) / (time.perf_counter() - start)


def main() -> None:
    items = requests()
    c = constants()
    cold = rate(lambda r: predict_with(r, c), list(items), 3)
    predict.cache_clear()
    first = rate(predict, list(items), 1)
    repeated = rate(predict, list(items), 2000)
    print(f"distinct requests          {len(items)}")
    print(f"cold predictions/s         {cold:12,.0f}   (graph built and timed each call)")
    print(f"first-call predictions/s   {first:12,.0f}")
    print(f"repeated predictions/s     {repeated:12,.0f}   (cached on the frozen request)")
    print(f"repeated / cold            {repeated / cold:12,.0f}x")
    fields = [r.model_dump() for r in items]
    built = rate(lambda f: predict(PerfRequest.model_validate(f)), fields, 200)  # type: ignore[arg-type]
    print(f"repeated, request built per call {built:8,.0f}   (as a caller holding plain values)")
    per_workload = {}
    for workload, _ in WORKLOADS:
        subset = [r for r in items if r.workload == workload]
        per_workload[workload] = rate(lambda r: predict_with(r, c), list(subset), 3)
    print("cold predictions/s by workload:")
    for workload, value in per_workload.items():
        print(f"  {workload:<22} {value:10,.0f}")


if __name__ == "__main__":
    main()
