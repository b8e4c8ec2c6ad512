"""Side effects: everything the operator does to the cluster, through kubewire.

The handlers call into this layer; this layer asks :mod:`migoperator.planning`
what to do and then does it (patch labels, write the mig-parted ConfigMap,
create and bind pods, record events and status). Nothing here blocks the
event loop.
"""
