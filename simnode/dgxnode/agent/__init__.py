"""The node agent: plays the kubelet for many simulated DGX nodes (kubelet-less mode)."""
