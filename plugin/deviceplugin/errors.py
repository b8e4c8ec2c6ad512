"""Errors of the device plugin."""


class DevicePluginError(RuntimeError):
    """Base of the plugin's errors."""


class StrategyError(DevicePluginError):
    """The node's MIG layout cannot be advertised under the chosen strategy."""


class DeviceRequestError(DevicePluginError):
    """An allocation request names devices the plugin cannot give."""


class RegistrationError(DevicePluginError):
    """The kubelet refused or did not answer the registration."""
