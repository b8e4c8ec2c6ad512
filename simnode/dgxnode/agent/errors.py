"""Errors of the node agent."""


class AgentError(RuntimeError):
    """Base of the node agent's errors."""


class DeviceAllocationError(AgentError):
    """Devices for a container could not be allocated; the message names the resource."""


class CheckpointError(AgentError):
    """The allocation checkpoint cannot be read; it is left in place for inspection."""


class AnnotationError(AgentError):
    """A ``dgxsim.io/*`` annotation on a pod is malformed."""


class PodRejectedError(AgentError):
    """A pod cannot run; ``reason`` is what the kubelet would write for it
    (``UnexpectedAdmissionError`` for devices that could not be allocated)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
