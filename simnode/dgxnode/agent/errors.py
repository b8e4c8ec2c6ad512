"""Errors of the node agent."""


class AgentError(RuntimeError):
    """Base of the node agent's errors."""


class DeviceAllocationError(AgentError):
    """Devices for a container could not be allocated; the message names the resource."""


class CheckpointError(AgentError):
    """The allocation checkpoint cannot be read; it is left in place for inspection."""


class AnnotationError(AgentError):
    """A ``dgxsim.io/*`` annotation on a pod is malformed."""
