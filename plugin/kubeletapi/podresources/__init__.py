"""The kubelet's PodResources API: which devices the kubelet has assigned to which pod."""
