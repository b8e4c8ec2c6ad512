"""Pure planning: what the cluster should look like, decided without any I/O.

Everything here is a function of values (node views, pending demand, the
planner's memory and the current time) returning values (decisions, reasons,
new memory). No kopf, no Kubernetes client: an import-linter contract keeps it
so, and the property tests drive it directly.
"""
