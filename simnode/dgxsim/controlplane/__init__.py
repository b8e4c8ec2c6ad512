"""The local Kubernetes control plane that kubelet-less mode and the tests run on."""

from dgxsim.controlplane.cluster import AlreadyRunningError, ControlPlane, ControlPlaneState
from dgxsim.controlplane.errors import ControlPlaneError

__all__ = ["AlreadyRunningError", "ControlPlane", "ControlPlaneError", "ControlPlaneState"]
