"""The one Kubernetes API client, shared by the node agent, the operator and the CLI.

Every component reads a handful of fields of large objects, so objects stay
JSON dicts and each API call the project makes is one method of
:class:`KubeClient` (:mod:`kubewire.client`). Every failure is one of the
:mod:`kubewire.errors` family, naming the call that failed and chained from
the library's error; every watch goes through one decoder and one
list-then-watch loop (:mod:`kubewire.watch`); raw answers, timestamps and
Event bodies are handled in :mod:`kubewire.wire`. It imports nothing of the project.
"""

from kubewire.client import CustomResource, KubeClient, or_none
from kubewire.errors import (
    ConflictError,
    ExpiredError,
    ForbiddenError,
    InvalidError,
    KubeconfigError,
    KubeError,
    MalformedError,
    NotFoundError,
    UnavailableError,
)
from kubewire.watch import Lister, ObjectList, Watcher, WatchEvent, decode_events, list_and_watch
from kubewire.wire import JSON, event_body, now_micro, now_rfc3339, read_json

__all__ = [
    "JSON", "ConflictError", "CustomResource", "ExpiredError", "ForbiddenError", "InvalidError",
    "KubeClient", "KubeError", "KubeconfigError", "Lister", "MalformedError", "NotFoundError",
    "ObjectList", "UnavailableError", "WatchEvent", "Watcher", "decode_events", "event_body",
    "list_and_watch", "now_micro", "now_rfc3339", "or_none", "read_json",
]
