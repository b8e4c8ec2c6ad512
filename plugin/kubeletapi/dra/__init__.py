"""Wire format of the kubelet's DRA plugin API (``k8s.io/kubelet/pkg/apis/dra``)."""
