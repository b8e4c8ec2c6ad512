"""The simulated DGX node: its state, MIG changes, nvidia-smi, metrics and node agent."""
