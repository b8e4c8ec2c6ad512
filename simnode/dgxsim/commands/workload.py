"""``dgxsim workload``: what a job container runs on a simulated DGX node.

It finds its node through the environment the device plugin's Allocate set
(``DGXSIM_ENDPOINT``, ``DGXSIM_NODE``, ``NVIDIA_VISIBLE_DEVICES``), asks the node
for the predicted step time of its workload on exactly those devices, marks
them in use for as long as it runs, and prints training-like progress while it
waits out the predicted time (divided by the cluster's time scale). SIGTERM
ends it early, releasing the devices, as a real training process would.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from dgxsim.commands import CommandError

if TYPE_CHECKING:
    import asyncio

    from dgxnode.agent.workload import WorkloadSpec

PROGRESS_LINES = 20


def register(sub: Any) -> None:
    p = sub.add_parser("workload", help="run a simulated training or inference job "
                                        "(the job containers' entrypoint)")
    p.add_argument("--workload", help="a workload of the performance model "
                                      "(default: $DGXSIM_WORKLOAD JSON)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--precision", default="fp16")
    p.add_argument("--batch", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--duration", help="run this long instead of a predicted time (90s, 5m)")
    p.set_defaults(func=cmd_workload)


def _spec(args: argparse.Namespace) -> WorkloadSpec | None:
    from dgxnode.agent.workload import WorkloadSpec

    if args.duration:
        return None
    if args.workload:
        return WorkloadSpec(workload=args.workload, steps=args.steps, precision=args.precision,
                            batch=args.batch, seq_len=args.seq_len)
    raw = os.environ.get("DGXSIM_WORKLOAD")
    if not raw:
        raise CommandError("say what to run: --workload NAME, --duration 90s, or "
                           "$DGXSIM_WORKLOAD as JSON")
    try:
        return WorkloadSpec.model_validate_json(raw)
    except ValueError as err:
        raise CommandError(f"$DGXSIM_WORKLOAD: {err}") from err


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise CommandError(f"${name} is not set: run this inside a container that was given "
                           "a dgxsim GPU or MIG device")
    return value


class NodeClient:
    """HTTP over the node's Unix socket."""

    def __init__(self, endpoint: str, node: str) -> None:
        if not endpoint.startswith("unix://"):
            raise CommandError(f"$DGXSIM_ENDPOINT {endpoint!r} is not a unix:// endpoint")
        self.socket = endpoint.removeprefix("unix://")
        self.base = f"http://node/v1/nodes/{node}"

    async def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        connector = aiohttp.UnixConnector(path=self.socket)
        try:
            async with aiohttp.ClientSession(connector=connector) as session, \
                    session.request(method, self.base + path, json=body) as resp:
                data: dict[str, Any] = await resp.json(content_type=None)
        except aiohttp.ClientError as err:
            raise CommandError(f"cannot reach the node at {self.socket}: {err}") from err
        if resp.status >= 400:
            raise CommandError(f"node refused {path}: {data.get('error', resp.status)}")
        return data


async def _run(args: argparse.Namespace) -> int:
    import asyncio

    from dgxnode.agent.workload import parse_duration

    spec = _spec(args)
    devices = [d for d in _env("NVIDIA_VISIBLE_DEVICES").split(",") if d]
    client = NodeClient(_env("DGXSIM_ENDPOINT"), _env("DGXSIM_NODE"))
    # Set through the downward API in the pod spec; a pod's hostname is its name.
    owner = "/".join([os.environ.get("DGXSIM_POD_NAMESPACE", "default"),
                      os.environ.get("DGXSIM_POD_NAME", os.environ.get("HOSTNAME", "workload")),
                      os.environ.get("DGXSIM_CONTAINER_NAME", "main")])
    if spec is None:
        wall_s = parse_duration(args.duration)
        steps, label = max(1, int(wall_s)), f"{wall_s:g} s"
    else:
        plan = await client.call("POST", "/predict", {
            "workload": spec.model_dump(exclude_none=True), "devices": devices})
        wall_s, steps = float(plan["wall_s"]), int(plan["steps"])
        label = f"{spec.workload}, {plan['step_time_s'] * 1000:.2f} ms/step predicted"
    print(f"dgxsim workload: {label} on {', '.join(devices)}", flush=True)
    await client.call("POST", "/containers", {"owner": owner, "devices": devices})
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        return await _progress(steps, wall_s, stop)
    finally:
        await client.call("DELETE", "/containers", {"owner": owner, "devices": devices})


async def _progress(steps: int, wall_s: float, stop: asyncio.Event) -> int:
    import asyncio

    started = time.monotonic()
    every = max(1, steps // PROGRESS_LINES)
    for mark in range(every, steps + every, every):
        step = min(mark, steps)
        target = started + wall_s * step / steps
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, target - time.monotonic()))
            print(f"terminated at step {step}/{steps}", flush=True)
            return 143
        except TimeoutError:
            pass
        elapsed = time.monotonic() - started
        rate = step / elapsed if elapsed else 0.0
        print(f"step {step:>6}/{steps}  {rate:8.1f} steps/s  elapsed {elapsed:7.1f} s  "
              f"eta {max(0.0, wall_s - elapsed):7.1f} s", flush=True)
    print(json.dumps({"status": "completed", "steps": steps}), flush=True)
    return 0


def cmd_workload(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_run(args))
