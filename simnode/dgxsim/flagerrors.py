"""Validation errors in the words of the command line.

Commands build pydantic models from their options (a ``PerfRequest`` from
``predict``'s flags, the operator's settings from its flags and environment),
so a bad value surfaces as a ``ValidationError`` that speaks of field paths
(``nodes``, ``metrics.liveness_port``) and of pydantic ("Input should be
greater than or equal to 1"). A user typed ``--nodes 0``; this module finds the
flag they typed for the failing field and says what the value must be:
``--nodes: must be at least 1, got 0``. Fields no flag on the command line set
(defaults, environment variables) keep their path.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

Loc = tuple[int | str, ...]

BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
    "literal_error": ("expected", "must be {}"),
    "string_too_short": ("min_length", "must be at least {} characters"),
    "string_too_long": ("max_length", "must be at most {} characters"),
}
"""pydantic error type -> (the ``ctx`` key holding the limit, how to say it)."""

KINDS = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "missing": "is required",
    "extra_forbidden": "is not a known setting",
}
"""pydantic error types whose message needs no limit."""


def flag_for(loc: Loc, argv: Sequence[str]) -> str | None:
    """The option in ``argv`` that set the field at ``loc``, as typed, or None.

    argparse names an option's value after its long flag (``--gpus-per-node``
    -> ``gpus_per_node``), and a command passes the value on to a field of the
    same name, possibly inside a group (``metrics.liveness_port`` from
    ``--liveness-port``, ``metrics.port`` from ``--metrics-port``).
    """
    names = [str(part) for part in loc if isinstance(part, str)]
    candidates = ["_".join(names[i:]) for i in range(len(names))]
    typed = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    for name in candidates:
        flag = "--" + name.replace("_", "-")
        if flag in typed:
            return flag
    return None


def phrase(error: ErrorDetails) -> str:
    """What the value must be, in plain words (pydantic's message where none fits)."""
    ctx = error.get("ctx") or {}
    if error["type"] in BOUNDS:
        key, text = BOUNDS[error["type"]]
        if key in ctx:
            return text.format(ctx[key])
    if error["type"] in KINDS:
        return KINDS[error["type"]]
    if error["type"] == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return error["msg"][:1].lower() + error["msg"][1:]


def describe(err: ValidationError, argv: Sequence[str]) -> str:
    """One line for the first error: the flag (or field path), what it must be, the
    value given; and how many more errors there are."""
    errors = err.errors()
    first = errors[0]
    flag = flag_for(first["loc"], argv)
    where = flag or ".".join(str(part) for part in first["loc"]) or "value"
    line = f"{where}: {phrase(first)}"
    value = first.get("input")
    if first["type"] != "missing" and isinstance(value, str | int | float) \
            and not isinstance(value, bool):
        line += f", got {value!r}" if isinstance(value, str) else f", got {value}"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more)"
    return line
