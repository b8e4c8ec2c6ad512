"""Errors of the DRA plugin."""


class DraPluginError(RuntimeError):
    """Base of the DRA plugin's errors."""


class PrepareError(DraPluginError):
    """A claim cannot be prepared on this node (the message says why)."""


class CheckpointError(DraPluginError):
    """The plugin's record of prepared claims cannot be read or written."""
