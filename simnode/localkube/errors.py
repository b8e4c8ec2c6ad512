"""Errors of the local control plane; each message is one line a user can act on."""


class ControlPlaneError(RuntimeError):
    """Starting, inspecting or stopping the local control plane failed."""
