"""``dgxsim predict`` and ``dgxsim validate``: the performance model from the command line.

Why here and not in gpumodel: reading CSV files, printing tables and drawing
plots are I/O, and the domain model stays pure. ``predict`` answers one
question; ``validate`` predicts every row of a ``published.csv``-format file and
reports each error and the MAPE (``--json`` for machines, ``--plot`` for
people), and ``--claims`` recomputes the DGX A100 white paper's claims.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgxsim.commands import CommandError, LazyChoices, pyplot

if TYPE_CHECKING:
    from gpumodel.perf import Prediction
    from gpumodel.perf.validation import PublishedRow, ValidationReport


def workload_names() -> list[str]:
    from gpumodel.perf import WORKLOADS

    return sorted(WORKLOADS)


def register(sub: Any) -> None:
    pred = sub.add_parser("predict", help="predict a workload's speed on DGX hardware")
    pred.add_argument("--workload", required=True, choices=LazyChoices(workload_names),
                      metavar="NAME", help="%(choices)s")
    pred.add_argument("--gpu", required=True, help="a100-40gb, a100-80gb, v100-16gb, ...")
    pred.add_argument("--gpus-per-node", type=int, default=1, metavar="N")
    pred.add_argument("--nodes", type=int, default=1, metavar="M")
    pred.add_argument("--mig-profile", default=None, metavar="P", help="e.g. 1g.5gb")
    pred.add_argument("--precision", required=True, help="fp32, tf32, fp16, bf16, int8, ...")
    pred.add_argument("--sparse", action="store_true", help="2:4 structured sparsity")
    pred.add_argument("--batch", type=int, default=None, metavar="B", help="per GPU")
    pred.add_argument("--seq-len", type=int, default=None, metavar="L")
    pred.add_argument("--framework", default=None, metavar="F")
    pred.add_argument("--epoch", type=int, default=2, help="1 = first epoch (network storage)")
    pred.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                      help="workload parameter (repeatable), e.g. m=4096 or tp=8")
    pred.add_argument("--json", action="store_true", help="print the prediction as JSON")
    pred.set_defaults(func=cmd_predict)

    val = sub.add_parser("validate", help="compare predictions with published measurements")
    val.add_argument("file", nargs="?", type=Path, help="a CSV in the format of published.csv")
    val.add_argument("--json", action="store_true", help="one JSON object: mape and rows")
    val.add_argument("--plot", type=Path, default=None, metavar="OUT.png",
                     help="draw predicted against published on log axes")
    val.add_argument("--claims", action="store_true", help="recompute the white paper's claims")
    val.add_argument("--fit", action="store_true",
                     help="re-fit the fitted constants on the single-GPU rows and print them")
    val.set_defaults(func=cmd_validate)


# Request fields as the flags that set them, for error messages.
_FLAGS = {"gpus_per_node": "--gpus-per-node", "nodes": "--nodes", "batch": "--batch",
          "seq_len": "--seq-len", "epoch": "--epoch", "mig_profile": "--mig-profile",
          "precision": "--precision", "framework": "--framework", "gpu": "--gpu",
          "parameter": "--param"}


def _param(text: str) -> tuple[str, float | str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--param {text!r}: expected KEY=VALUE")
    try:
        number = float(value)
    except ValueError:
        return key, value
    if not math.isfinite(number):
        raise CommandError(f"--param {text}: not a finite number")
    return key, number


def _with_flag(message: str) -> str:
    """The model's message with a request field named as the CLI flag that sets it."""
    field, _, rest = message.partition(" ")
    flag = _FLAGS.get(field)
    return f"{flag} {rest}" if flag else message


def cmd_predict(args: argparse.Namespace) -> int:
    from gpumodel.perf import PerfError, PerfRequest, predict

    params = tuple(sorted(_param(p) for p in args.param))
    try:
        request = PerfRequest(
            workload=args.workload, gpu=args.gpu, gpus_per_node=args.gpus_per_node,
            nodes=args.nodes, mig_profile=args.mig_profile, precision=args.precision,
            sparse=args.sparse, batch=args.batch, seq_len=args.seq_len,
            framework=args.framework, epoch=args.epoch, params=params)
        result = predict(request)
    except PerfError as err:
        raise CommandError(_with_flag(str(err))) from err
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        _print_prediction(result)
    return 0


def _print_prediction(p: Prediction) -> None:
    r = p.request
    where = f"{p.gpus} x {r.gpu}" + (f" ({r.mig_profile})" if r.mig_profile else "")
    print(f"{r.workload} on {where}, {r.precision}{' sparse' if r.sparse else ''}, "
          f"framework {p.framework}")
    print(f"  throughput     {p.samples_per_s:,.2f} samples/s ({p.samples_per_step:g} per step)")
    print(f"  step time      {p.step_time_s * 1e3:,.3f} ms")
    print(f"  latency        {p.latency_s * 1e3:,.3f} ms")
    for label, value, unit in (("achieved", p.tflops, "TFLOPS"),
                               ("bandwidth", p.bandwidth_gb_per_s, "GB/s"),
                               ("bus bandwidth", p.busbw_gb_per_s, "GB/s")):
        if value is not None:
            print(f"  {label:<14} {value:,.2f} {unit}")
    b = p.breakdown
    print("  breakdown (seconds per step)")
    for name, value in (("compute", b.compute_s), ("memory", b.memory_s),
                        ("kernel overhead", b.overhead_s),
                        ("communication exposed", b.communication_exposed_s),
                        ("communication overlapped", b.communication_overlapped_s),
                        ("optimizer", b.optimizer_s), ("pipeline bubble", b.pipeline_bubble_s),
                        (f"I/O ({p.io_source})", b.io_s), ("I/O exposed", b.io_exposed_s)):
        print(f"    {name:<26} {value:.6f}")
    for note in p.notes:
        print(f"  note: {note}")


def read_rows(path: Path) -> tuple[list[PublishedRow], list[tuple[str, str]]]:
    """Rows of a published.csv-format file, and (id, reason) for rows that do not parse."""
    from pydantic import ValidationError

    from gpumodel.perf.validation import PublishedRow

    try:
        text = path.read_text()
    except OSError as err:
        raise CommandError(f"cannot read {path}: {err.strerror}") from err
    rows: list[PublishedRow] = []
    bad: list[tuple[str, str]] = []
    for number, cells in enumerate(csv.DictReader(text.splitlines()), start=2):
        try:
            rows.append(PublishedRow.from_cells(cells))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(x) for x in first["loc"])
            bad.append((cells.get("id") or f"line {number}", f"{field}: {first['msg']}"))
    return rows, bad


def cmd_validate(args: argparse.Namespace) -> int:
    from gpumodel.perf.claims import white_paper_claims
    from gpumodel.perf.validation import validate

    if args.file is None and not args.claims:
        raise CommandError("give a CSV file, --claims, or both")
    out: dict[str, Any] = {}
    if args.file is not None:
        rows, bad = read_rows(args.file)
        if args.fit:
            _print_fit(rows)
            return 0
        report = validate(rows)
        unpredictable = [(u.id, u.reason) for u in report.unpredictable] + bad
        if args.json:
            out.update(_report_json(report, unpredictable))
        else:
            _print_report(report, unpredictable)
        if args.plot is not None:
            _plot(report, args.plot)
    if args.claims:
        claims = white_paper_claims()
        if args.json:
            out["claims"] = [c.model_dump() for c in claims]
        else:
            _print_claims(claims)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


def _report_json(report: ValidationReport, unpredictable: list[tuple[str, str]]) -> dict[str, Any]:
    from gpumodel.perf.calibration import constants

    worst = report.worst
    return {
        "mape": round(report.mape, 3),
        "worst": None if worst is None else {"id": worst.id,
                                             "error_pct": round(worst.error_pct, 3)},
        "fitted_constants": len(constants().fitted_names()),
        "rows": [{"id": r.id, "workload": r.workload, "gpu": r.gpu, "gpus": r.gpus,
                  "metric": r.metric, "predicted": round(r.predicted, 4),
                  "published": r.published, "error_pct": round(r.error_pct, 3)}
                 for r in report.rows],
        "unpredictable": [{"id": i, "reason": reason} for i, reason in unpredictable],
    }


def _print_report(report: ValidationReport, unpredictable: list[tuple[str, str]]) -> None:
    from gpumodel.perf.calibration import constants

    print(f"{'id':<5} {'workload':<27} {'gpu':<10} {'gpus':>4} {'metric':<15} "
          f"{'predicted':>11} {'published':>11} {'error':>8}")
    for r in report.rows:
        print(f"{r.id:<5} {r.workload:<27} {r.gpu:<10} {r.gpus:>4} {r.metric:<15} "
              f"{r.predicted:>11,.2f} {r.published:>11,.2f} {r.error_pct:>+7.1f}%")
    for row_id, reason in unpredictable:
        print(f"{row_id:<5} cannot predict: {reason}")
    c = constants()
    print(f"\nMAPE {report.mape:.2f}% over {len(report.rows)} rows", end="")
    if report.worst is not None:
        print(f"; worst {report.worst.id} {report.worst.error_pct:+.1f}%", end="")
    print(f"; {len(c.fitted_names())} fitted constants, fitted on single-GPU rows "
          f"{', '.join(c.fitted_rows())}")


def _print_claims(claims: Any) -> None:
    print("\nDGX A100 white paper claims, recomputed:")
    for claim in claims:
        mark = "holds" if claim.holds else "DOES NOT HOLD"
        print(f"  [{mark}] {claim.statement}")
        print(f"      computed {claim.computed:,.2f} {claim.unit} (paper {claim.claimed:,.2f}): "
              f"{claim.detail}")


def _print_fit(rows: list[PublishedRow]) -> None:
    from gpumodel.perf import PerfError
    from gpumodel.perf.calibration import constants
    from gpumodel.perf.fitting import fit

    try:
        values = fit(rows, constants())
    except PerfError as err:
        raise CommandError(str(err)) from err
    for name, value in values.items():
        print(f"{name} = {value:.4g}")


def _plot(report: ValidationReport, path: Path) -> None:
    """Predicted against published (log axes, a +-10% band) and each row's error.

    Rows a constant was fitted on and rows that are pure predictions (every
    multi-GPU row) get different colours, so a reader sees what was calibrated.
    """
    from gpumodel.perf.calibration import constants

    plt = pyplot()

    fitted = set(constants().fitted_rows())
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [1, 1.3]})
    colours = ["tab:blue" if r.id in fitted else "tab:orange" for r in report.rows]
    published = [r.published for r in report.rows]
    predicted = [r.predicted for r in report.rows]
    ax.scatter(published, predicted, s=18, c=colours)
    for r in report.rows:
        ax.annotate(r.id, (r.published, r.predicted), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    low, high = min(published + predicted) * 0.7, max(published + predicted) * 1.4
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
    ax.fill_between([low, high], [low * 0.9, high * 0.9], [low * 1.1, high * 1.1],
                    color="grey", alpha=0.15, label="+-10%")
    ax.set(xscale="log", yscale="log", xlabel="published (each row's unit)", ylabel="predicted",
           title=f"MAPE {report.mape:.1f}% over {len(report.rows)} rows")
    ax.legend(loc="upper left", fontsize=8)
    bars.bar([r.id for r in report.rows], [r.error_pct for r in report.rows], color=colours)
    for limit in (-10, 10):
        bars.axhline(limit, color="grey", linewidth=0.8, linestyle="--")
    bars.set(ylabel="error (%)", title="blue: fitted-on single-GPU rows; orange: predictions")
    bars.tick_params(axis="x", labelrotation=90, labelsize=7)
    fig.suptitle("dgxsim performance model against published measurements")
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as err:
        raise CommandError(f"cannot write {path}: {err.strerror}") from err
    finally:
        plt.close(fig)
