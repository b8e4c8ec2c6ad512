"""Generated code for ``package k8s.io.kubelet.pkg.apis.dra.v1`` and its constants."""

DRA_PLUGIN_SERVICE = "v1.DRAPlugin"
"""What a DRA plugin lists in its registration's supported versions for this API."""
DRA_PLUGIN_TYPE = "DRAPlugin"
"""The plugin type a DRA plugin registers with (``PluginInfo.type``)."""
