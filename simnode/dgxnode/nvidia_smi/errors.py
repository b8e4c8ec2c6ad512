"""How ``nvidia-smi`` fails: its message lines and its exit code.

Exit codes are the ones ``nvidia-smi(1)`` documents (2 invalid argument, 3 not
supported, 6 not found, 255 other, which covers "Insufficient Resources" and
"In use by another client"). Messages are printed on stdout, as nvidia-smi does.
"""

from __future__ import annotations

SUCCESS = 0
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NOT_FOUND = 6
OTHER = 255


class SmiError(Exception):
    """Stop with ``lines`` printed and exit code ``code``."""

    def __init__(self, code: int, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.code = code
        self.lines = lines
