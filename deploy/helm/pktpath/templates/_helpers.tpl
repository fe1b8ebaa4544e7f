{{/* Chart name, overridable. */}}
{{- define "pktpath.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: "<release>-pktpath", or the release name when it already contains the chart name. */}}
{{- define "pktpath.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pktpath.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "pktpath.labels" -}}
helm.sh/chart: {{ include "pktpath.chart" . }}
{{ include "pktpath.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
{{- end }}

{{/* The labels selectors match on: never change them in an upgrade (a DaemonSet's selector is immutable). */}}
{{- define "pktpath.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pktpath.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pktpath.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pktpath.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pktpath.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The metrics port, taken from config.metrics.listen ("host:port", "[v6]:port") so the agent's
config is the one place it is set.
*/}}
{{- define "pktpath.metricsPort" -}}
{{- $listen := required "config.metrics.listen is required (host:port)" .Values.config.metrics.listen }}
{{- $port := splitList ":" $listen | last | atoi }}
{{- if or (lt $port 1) (gt $port 65535) }}
{{- fail (printf "config.metrics.listen %q: the chart needs a fixed port 1..65535 (it is the container port)" $listen) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
Capabilities added to the container (everything else is dropped). values.yaml explains each one.
*/}}
{{- define "pktpath.capabilities" -}}
{{- $caps := list "BPF" "PERFMON" "NET_ADMIN" }}
{{- if .Values.capabilities.netnsInterfaceNames }}
{{- $caps = append $caps "SYS_ADMIN" }}
{{- end }}
{{- if .Values.capabilities.legacyKernel }}
{{- $caps = concat $caps (list "SYS_ADMIN" "SYS_RESOURCE") }}
{{- end }}
{{- if (.Values.config.kubernetes | default dict).pod_labels }}
{{- $caps = append $caps "SYS_PTRACE" }}
{{- end }}
{{- $caps = concat $caps .Values.capabilities.extra }}
{{- toYaml (uniq $caps) }}
{{- end }}

{{/*
OTEL_RESOURCE_ATTRIBUTES: the node first (see values.yaml), then the user's. Not k8s.pod.name or
k8s.namespace.name: on pktpath's spans those attributes name the pod a packet belonged to (pod
labels), and a resource attribute of the same name naming the agent's own pod would contradict them.
*/}}
{{- define "pktpath.resourceAttributes" -}}
{{- $attrs := list "host.name=$(NODE_NAME)" "k8s.node.name=$(NODE_NAME)" }}
{{- range $k, $v := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k (toString $v)) }}
{{- end }}
{{- join "," $attrs }}
{{- end }}

{{/*
"true" when the agent reads pods from the API server: pod labels on (config.kubernetes.pod_labels)
and no pods_file. Only then does it need a token and the cluster-wide pod-reading role.
*/}}
{{- define "pktpath.readsPodApi" -}}
{{- $k := .Values.config.kubernetes | default dict }}
{{- if and $k.pod_labels (not $k.pods_file) }}true{{ end }}
{{- end }}
