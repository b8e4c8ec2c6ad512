"""Generated code for ``package pluginregistration`` v1 (``make proto``)."""
