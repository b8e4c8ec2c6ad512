"""``dgxsim replay``: replay a pod trace on the running cluster and report on it.

``dgxsim replay TRACE.csv`` reads a pod list in the Alibaba GPU cluster trace
format (cluster-trace-gpu-v2023), creates its pods on the cluster at their
arrival times, lets each run for its traced duration, shows progress, and
writes a report (CSV and PNG) of waits, GPU allocation, MIG fragmentation and
pending pods. ``dgxsim replay-compare A B`` puts two reports side by side, as
for one trace replayed under a static MIG layout and under the dynamic policy.
The rules (time scaling, gpu_milli -> MIG profile, CPU-only pods, bad rows)
are in the ``--help`` epilog and :mod:`dgxsim.replay.plan`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgxsim.commands import CommandError, add_state_dir, pyplot, state_dir_of

if TYPE_CHECKING:
    from dgxsim.clusterfile import ClusterSettings
    from dgxsim.replay.driver import ReplayOptions, ReplayResult
    from dgxsim.replay.plan import PlannedPod
    from dgxsim.replay.trace import Trace

DEFAULT_STATIC_CONFIG = "all-balanced"
RULES = """\
trace format: the pod list of Alibaba's cluster-trace-gpu-v2023 (columns name, cpu_milli,
memory_mib, num_gpu, gpu_milli, gpu_spec, qos, pod_phase, creation_time, deletion_time,
scheduled_time; times in seconds). A malformed trace is refused with file, line and column
of every bad cell (--skip-bad-rows skips and counts bad rows instead).

time: pods are created at creation_time and run for deletion_time minus scheduled_time
(or creation_time if never scheduled), in simulated seconds divided by --speed.

resources: num_gpu >= 2, or 1 with gpu_milli 1000 -> nvidia.com/gpu: num_gpu.
gpu_milli < 1000 -> one MIG device of the smallest profile whose compute share (slices/7)
covers it; on A100-40GB <=142 1g.5gb, <=285 2g.10gb, <=428 3g.20gb, <=571 4g.20gb,
else 7g.40gb. num_gpu 0 (CPU-only): skipped, counted in the report.

policies: static labels every node nvidia.com/mig.config=--mig-config (default
all-balanced) and waits for nvidia.com/mig.config.state=success; dynamic resets nodes to
all-disabled (or --mig-config) and labels them dgxsim.io/mig-policy=dynamic, so the
operator carves MIG devices for pending pods.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay a pod trace (Alibaba GPU trace format) and report",
                       epilog=RULES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace", type=Path, metavar="TRACE.csv")
    add_state_dir(p)
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="trace seconds per simulated second (default 1)")
    p.add_argument("--policy", choices=("static", "dynamic"), default="static")
    p.add_argument("--mig-config", default=None, metavar="NAME",
                   help=f"static: the layout of every node (default {DEFAULT_STATIC_CONFIG}); "
                        "dynamic: the layout to start from (default all-disabled)")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="where to write the report (default STATE_DIR/replays/TRACE-POLICY)")
    p.add_argument("--namespace", default=None, metavar="NS",
                   help="namespace of the replay's pods (default replay-POLICY)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip and count malformed rows instead of refusing the trace")
    p.add_argument("--stall-timeout", type=float, default=30.0, metavar="S",
                   help="wall seconds without progress after which waiting pods are "
                        "reported unschedulable (default 30)")
    p.add_argument("--progress-every", type=float, default=5.0, metavar="S",
                   help="wall seconds between progress lines (default 5)")
    p.add_argument("--no-plots", action="store_true", help="write the CSVs only")
    p.set_defaults(func=cmd_replay)
    c = sub.add_parser("replay-compare", help="two replay reports side by side (CSV and PNG)")
    c.add_argument("reports", type=Path, nargs=2, metavar="REPORT")
    c.add_argument("--out", type=Path, required=True, metavar="DIR")
    c.add_argument("--no-plots", action="store_true", help="write the CSV only")
    c.set_defaults(func=cmd_compare)


def _cluster(state_dir: Path) -> tuple[Path, ClusterSettings]:
    from dgxsim.clusterfile import ClusterFileError, load_settings
    from localkube import ControlPlane

    plane = ControlPlane(state_dir)
    if plane.running() is None:
        raise CommandError(f"no cluster running in {state_dir} (dgxsim up --nodes N)")
    try:
        settings = load_settings(state_dir)
    except ClusterFileError as err:
        raise CommandError(str(err)) from err
    if settings is None or settings.nodes == 0:
        raise CommandError(f"the cluster in {state_dir} has no simulated nodes "
                           "(dgxsim up --nodes N)")
    if settings.mig_strategy != "mixed":
        raise CommandError(f"replay needs the mixed MIG strategy (the cluster runs "
                           f"{settings.mig_strategy}): dgxsim up --mig-strategy mixed")
    return plane.kubeconfig, settings


def _load(args: argparse.Namespace) -> Trace:
    """The trace, read before the cluster is: a bad file is refused without one."""
    from dgxsim.replay.trace import TraceError, load_trace

    if not args.speed > 0:
        raise CommandError(f"--speed must be positive, got {args.speed}")
    try:
        return load_trace(args.trace, skip_bad_rows=args.skip_bad_rows)
    except TraceError as err:
        raise CommandError(str(err)) from err


def _plan(args: argparse.Namespace, trace: Trace, settings: ClusterSettings
          ) -> tuple[list[PlannedPod], int]:
    from dgxsim.replay.plan import MigRule, plan_pods
    from gpumodel.mig import profile_table
    from gpumodel.systems import system

    try:
        rule = MigRule.of(profile_table(system(settings.kind).gpu))
        pods = plan_pods(trace.lines, rule, args.speed)
    except ValueError as err:
        raise CommandError(str(err)) from err
    if not any(not p.skipped for p in pods):
        raise CommandError(f"{args.trace}: no pod asks for a GPU: nothing to replay")
    return pods, trace.skipped_rows


def _options(args: argparse.Namespace) -> ReplayOptions:
    from dgxsim.replay.driver import ReplayOptions
    from dgxsim.replay.plan import pod_name

    mig_config = args.mig_config or (DEFAULT_STATIC_CONFIG if args.policy == "static" else None)
    return ReplayOptions(namespace=args.namespace or f"replay-{args.policy}",
                         policy=args.policy, mig_config=mig_config,
                         label=pod_name(args.trace.stem), stall_s=args.stall_timeout,
                         progress_s=args.progress_every)


async def _run(kubeconfig: Path, settings: ClusterSettings, state_dir: Path,
               pods: list[PlannedPod], options: ReplayOptions) -> ReplayResult:
    from dgxnode.clock import persistent_clock
    from dgxsim.replay.driver import Replayer, apply_policy, ensure_namespace
    from gpumodel.mig import profile_table
    from gpumodel.systems import system
    from kubewire import KubeClient

    spec = system(settings.kind)
    kube = await KubeClient.connect(kubeconfig)
    try:
        await apply_policy(kube, options.policy, options.mig_config,
                           options.prepare_timeout_s, _say)
        await ensure_namespace(kube, options.namespace)
        replayer = Replayer(kube, persistent_clock(state_dir, settings.time_scale), pods,
                            options, gpus_per_node=spec.gpu_count,
                            slices_per_gpu=profile_table(spec.gpu).compute_slices, say=_say)
        return await replayer.run()
    finally:
        await kube.close()


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from dgxsim.replay.driver import ReplayError
    from dgxsim.replay.report import summarize, write_report
    from kubewire import KubeError

    state_dir = state_dir_of(args)
    trace = _load(args)
    kubeconfig, settings = _cluster(state_dir)
    pods, skipped_rows = _plan(args, trace, settings)
    options = _options(args)
    plt = None if args.no_plots else pyplot()
    if skipped_rows:
        _say(f"{args.trace}: skipped {skipped_rows} malformed rows")
    _say(f"replaying {len(pods)} pods of {args.trace} ({options.policy} policy, speed "
         f"{args.speed:g}, time scale x{settings.time_scale:g}) in namespace {options.namespace}")
    try:
        result = asyncio.run(_run(kubeconfig, settings, state_dir, pods, options))
    except (ReplayError, KubeError) as err:
        raise CommandError(f"replay failed: {err}") from err
    summary = summarize(result.outcomes, result.samples, trace=args.trace.name,
                        policy=options.policy, mig_config=options.mig_config, speed=args.speed,
                        time_scale=settings.time_scale)
    out = args.report or state_dir / "replays" / f"{options.label}-{options.policy}"
    written = write_report(out, result.outcomes, result.samples, summary)
    if plt is not None:
        written += _draw(plt, result, f"{args.trace.name}: {options.policy} policy", out)
    _print_summary(summary.model_dump(), written)
    return 0


def _draw(plt: Any, result: ReplayResult, title: str, out: Path) -> list[Path]:
    from dgxsim.replay.plots import TIMELINE_PNG, WAITS_PNG, draw_timeline, draw_waits

    return [draw_timeline(plt, result.samples, title, out / TIMELINE_PNG),
            draw_waits(plt, result.outcomes, title, out / WAITS_PNG)]


def _print_summary(summary: dict[str, Any], written: list[Path]) -> None:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(summary["outcomes"].items()))
    wait = summary["mean_wait_s"]
    _say(f"{summary['pods']} pods: {outcomes}")
    _say(f"mean wait {'-' if wait is None else f'{wait:.1f}'} s (simulated), mean GPU "
         f"allocation {summary['mean_allocation_ratio']:.1%}, peak "
         f"{summary['peak_allocation_ratio']:.1%}")
    for path in written:
        _say(f"wrote {path}")


def cmd_compare(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dgxsim.replay.compare import write_compare

    plt = None if args.no_plots else pyplot()
    try:
        written = write_compare(list(args.reports), args.out, plt)
    except (OSError, ValidationError, ValueError) as err:
        raise CommandError(f"cannot compare: {err}") from err
    with written[0].open() as f:
        print(f.read(), end="")
    for path in written:
        _say(f"wrote {path}")
    return 0
