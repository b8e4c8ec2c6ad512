"""Trace replay: drive a running dgxsim cluster with a recorded pod trace and report on it.

A platform engineer's question of an emulator is "what would this MIG policy do
to my cluster's utilisation and queueing". The answer needs real arrivals, so
this package replays a pod list in the column format of Alibaba's GPU cluster
trace (cluster-trace-gpu-v2023, ``openb_pod_list_*.csv``) against the cluster:

* :mod:`.trace` reads and validates the CSV (one pydantic model per row);
* :mod:`.plan` turns rows into pods: arrival and run time in simulated
  seconds, and the GPU resource each asks for (the gpu_milli -> MIG profile rule);
* :mod:`.snapshot` reads what the cluster holds at one instant (pure functions
  of Kubernetes objects): allocation, MIG fragmentation, pending demand;
* :mod:`.driver` creates the pods on the cluster's simulated clock and samples;
* :mod:`.report` and :mod:`.plots` write the CSVs and pictures, :mod:`.compare`
  puts two replays side by side.

Everything but the driver is pure, so the numbers are unit-tested on synthetic data.
"""
