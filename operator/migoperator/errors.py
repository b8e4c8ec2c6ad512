"""Errors of the operator, in the outcome vocabulary of a reconcile.

A handler has three outcomes besides success: the request can never succeed
(a DGXJob asks for an unknown workload or more GPUs than a node has: the job
is marked Failed with the reason and never retried), the world is not ready yet
(no capacity, a node still reconfiguring: retried after a delay), or the API
server refused a call. The first two map onto ``kopf.PermanentError`` and
``kopf.TemporaryError`` in :mod:`migoperator.handlers`; the planning layer
raises only these classes so it stays free of kopf. A refused call is one of
:mod:`kubewire.errors` (``KubeError``, ``ConflictError``...), the family every
API client of the project shares.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the operator raises."""


class InvalidJobError(OperatorError, ValueError):
    """A DGXJob that can never run as written (the message says why).

    ``reason`` is the CamelCase word written to ``status.reason``
    (``UnknownWorkload``, ``UnknownMigProfile``, ``InvalidSpec``...).
    """

    def __init__(self, message: str, reason: str = "InvalidSpec") -> None:
        super().__init__(message)
        self.reason = reason


class NotReadyError(OperatorError):
    """Something the operator waits for: capacity, a node's reconfiguration, a cache."""

    def __init__(self, message: str, delay_s: float = 5.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s
