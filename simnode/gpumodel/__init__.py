"""The domain model of dgxsim: hardware specs, DGX topology, MIG rules, performance model.

Pure data and functions with no I/O. simnode, the device plugin and the operator
all import it and it imports none of them (an import-linter contract keeps it so).
"""
