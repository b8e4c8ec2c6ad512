"""Wire format of the kubelet's plugin registration (``pluginregistration``)."""
