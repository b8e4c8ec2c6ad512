"""One error family for every way a call to the API server can fail.

Callers decide by what went wrong, not by which library noticed it: a missing
object (404) is often an answer, a conflict (409) means read again and retry,
an expired resourceVersion (410) means list again, a refusal of the request
itself (400, 403, 422) will not get better by retrying, and no answer at all
(a connection error, a timeout, 429 or 5xx) may. So the generated client's
``ApiException``, aiohttp's connection errors and a body that is not JSON all
become one :class:`KubeError` subclass, whose message names the call that
failed (``patch node dgx-0: HTTP 403: ...``) and whose ``__cause__`` is the
original error.
"""

from __future__ import annotations

import json

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

__all__ = ["ConflictError", "ExpiredError", "ForbiddenError", "InvalidError", "KubeError",
           "KubeconfigError", "MalformedError", "NotFoundError", "UnavailableError",
           "error_for", "wire_error"]

DETAIL_LIMIT = 500


class KubeError(Exception):
    """A call to the API server failed.

    ``what`` names the call (``list pods``), ``status`` is the HTTP status (0 when
    no answer came), ``detail`` the server's message or the underlying error.
    """

    def __init__(self, what: str, status: int, detail: str = "") -> None:
        answer = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{what}: {answer}{': ' + detail if detail else ''}")
        self.what = what
        self.status = status
        self.detail = detail


class NotFoundError(KubeError):
    """The object (or its namespace) does not exist (HTTP 404)."""


class ConflictError(KubeError):
    """An optimistic-concurrency conflict or an existing name (HTTP 409): read again."""


class ExpiredError(KubeError):
    """The resourceVersion a watch started from is gone (HTTP 410): list again."""


class ForbiddenError(KubeError):
    """The credentials lack the right to make this call (HTTP 403)."""


class InvalidError(KubeError):
    """The server refused the request as written (HTTP 400 or 422)."""


class UnavailableError(KubeError):
    """No usable answer: unreachable, timed out, throttled (429) or failing (5xx)."""


class MalformedError(KubeError):
    """The server answered with something that is not the JSON the call expects."""


class KubeconfigError(KubeError):
    """No client could be built: the kubeconfig (or the service account) is unusable."""


_BY_STATUS: dict[int, type[KubeError]] = {
    400: InvalidError, 403: ForbiddenError, 404: NotFoundError, 409: ConflictError,
    410: ExpiredError, 422: InvalidError, 429: UnavailableError,
}


def error_for(what: str, status: int, detail: str = "") -> KubeError:
    """The family member for an HTTP ``status`` (0: no answer) of call ``what``."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = UnavailableError if status == 0 or status >= 500 else KubeError
    return cls(what, status, detail[:DETAIL_LIMIT])


def server_message(body: str) -> str:
    """The ``message`` of a ``Status`` body, or the body itself when it is not one."""
    try:
        status = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return body.strip()


def wire_error(what: str, err: BaseException) -> KubeError:
    """The family member for an error the client libraries raised during call ``what``;
    raise it ``from err``."""
    if isinstance(err, KubeError):
        return err
    if isinstance(err, ApiException):
        body = err.body.decode(errors="replace") if isinstance(err.body, bytes) else err.body
        return error_for(what, int(err.status or 0), server_message(str(body or err.reason)))
    if isinstance(err, ConfigException):
        return KubeconfigError(what, 0, str(err))
    if isinstance(err, aiohttp.ClientResponseError):
        return error_for(what, err.status, err.message)
    if isinstance(err, aiohttp.ClientError | OSError):
        return UnavailableError(what, 0, str(err) or type(err).__name__)
    return KubeError(what, 0, f"{type(err).__name__}: {err}")


WIRE_ERRORS = (ApiException, ConfigException, aiohttp.ClientError, OSError)
"""What :func:`wire_error` translates (timeouts are ``OSError``): catch these around a
call, never ``Exception``, so a bug in the caller is not mistaken for the server's answer."""
