"""NVIDIA's DRA driver for GPUs (``gpu.nvidia.com``), played by a simulated node.

The kubelet plugin of one node: it publishes the node's ResourceSlices (static
or dynamic, :mod:`gpumodel.dra`), registers with the kubelet through
``pluginregistration`` v1 and serves the DRA plugin API v1 (prepare and
unprepare claims). It knows the node only through :class:`draplugin.host.GpuHost`,
which the composition root wires to the node's MIG engine.
"""
