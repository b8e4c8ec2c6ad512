"""Generated code for ``package v1`` of the PodResources API (``make proto``) and its constants."""
