"""The kopf operator that reconciles MIG layouts and places DGX jobs across nodes."""
