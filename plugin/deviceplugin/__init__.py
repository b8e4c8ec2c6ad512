"""The kubelet device plugin (gRPC v1beta1) advertising nvidia.com/gpu and nvidia.com/mig-*."""
