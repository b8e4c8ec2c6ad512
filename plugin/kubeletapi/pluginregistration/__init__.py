"""Wire format of the kubelet's plugin registration (``k8s.io/kubelet/pkg/apis/pluginregistration``)."""
