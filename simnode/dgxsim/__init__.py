"""The dgxsim command line and the local control plane: the one place that wires components.

simnode, the device plugin and the operator never import each other; this
package starts them and connects them through the wire formats they share.
"""
