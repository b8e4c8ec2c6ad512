{{/*
Names and labels shared by every template.
*/}}

{{- define "dgxsim.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: the release name, with the chart's name added unless it is in it. */}}
{{- define "dgxsim.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dgxsim.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dgxsim.labels" -}}
helm.sh/chart: {{ include "dgxsim.chart" . }}
app.kubernetes.io/name: {{ include "dgxsim.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dgxsim
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "node"). */}}
{{- define "dgxsim.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dgxsim.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dgxsim.componentLabels" -}}
{{ include "dgxsim.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dgxsim.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "dgxsim.nodeServiceAccount" -}}
{{- printf "%s-node" (include "dgxsim.fullname" .) -}}
{{- end -}}

{{- define "dgxsim.operatorServiceAccount" -}}
{{- printf "%s-operator" (include "dgxsim.fullname" .) -}}
{{- end -}}

{{/* The ConfigMap name is fixed: nodes and the operator look it up by this name. */}}
{{- define "dgxsim.migConfigsName" -}}
dgxsim-mig-configs
{{- end -}}

{{/* timeScale as the CLI reads it: a plain decimal, never Go's 1e+06 notation. */}}
{{- define "dgxsim.timeScale" -}}
{{- $s := toString .Values.timeScale -}}
{{- if contains "e" $s -}}
{{- printf "%f" (float64 .Values.timeScale) -}}
{{- else -}}
{{- $s -}}
{{- end -}}
{{- end -}}

{{/* The DaemonSet's nodeSelector as a kubectl label selector: k1=v1,k2=v2. */}}
{{- define "dgxsim.nodeSelectorString" -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.nodeSelector -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
The node's state directory inside the node pod: the hostPath hostPaths.state.path is
mounted at that same path (Allocate mounts the node's files into job containers by
their host paths), and hostPaths.state.subPathExpr, where set, names the node's own
folder in it ($(NODE_NAME) expands, as in a subPathExpr).
*/}}
{{- define "dgxsim.nodeStateDir" -}}
{{- with .Values.hostPaths.state.subPathExpr -}}
{{ trimSuffix "/" $.Values.hostPaths.state.path }}/{{ . }}
{{- else -}}
{{ $.Values.hostPaths.state.path }}
{{- end -}}
{{- end }}
