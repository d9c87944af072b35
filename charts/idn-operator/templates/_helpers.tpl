{{/* Name of the chart, or nameOverride. */}}
{{- define "idn-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. Truncated to 63 characters: some fields (DNS label names)
allow no more.
*/}}
{{- define "idn-operator.fullname" -}}
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

{{/* Labels of every object. */}}
{{- define "idn-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "idn-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods; immutable once installed. */}}
{{- define "idn-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idn-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ConfigMap of the Grafana dashboard. */}}
{{- define "idn-operator.dashboardName" -}}
{{- printf "%s-dashboard" (include "idn-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "idn-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "idn-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "idn-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "idn-operator.agentImage" -}}
{{- printf "%s:%s" .Values.agentImage.repository (.Values.agentImage.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Rules for the resources the operator reconciles, in every namespace it watches: reads the
idn.dev resources, writes the network status, owns the node objects (ConfigMap, Deployment,
Service per node), reads link token secrets to check they exist, and records events.
*/}}
{{- define "idn-operator.watchRules" -}}
# What the operator asks for, checked against the API server's audit log in tests/e2e/test_rbac.py.
# It lists and watches, and reads what it watched from its caches: it never gets one object by
# name.
- apiGroups: ["idn.dev"]
  resources: ["inferencedeliverynetworks", "inferencemodels", "deliverystrategies", "modelplacements"]
  verbs: ["list", "watch"]
- apiGroups: ["idn.dev"]
  resources: ["inferencedeliverynetworks/status"]
  verbs: ["patch"]
# Server-side apply creates an object with a patch, which the API server authorizes as create
# too: hence create, which the audit log never shows.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The secrets of remote links: watched so that one created after its network is reconciled at
# once. The operator keeps which keys they have, not their values.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The operator's account, as the subject of its role bindings. */}}
{{- define "idn-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "idn-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}
