{{/* Chart name, or nameOverride. */}}
{{- define "mediaconvert-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects, at most 63 characters. */}}
{{- define "mediaconvert-operator.fullname" -}}
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

{{- define "mediaconvert-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mediaconvert-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mediaconvert-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mediaconvert-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mediaconvert-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mediaconvert-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mediaconvert-operator.leaseName" -}}
{{- default (include "mediaconvert-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Rules for the resources the operator reconciles. `delete` is for
ttlSecondsAfterFinished. The operator writes with patches; `update` is granted
beside `patch`, as is conventional for controllers, so that switching a write
from patch to update needs no RBAC change. Events are granted in both API
groups: kube-rs writes events.k8s.io/v1, and core v1 Events are the same
objects under the legacy group.
*/}}
{{- define "mediaconvert-operator.jobRules" -}}
- apiGroups: [mediaconvert.operators.dev]
  resources: [mediaconvertjobs]
  verbs: [get, list, watch, patch, update, delete]
- apiGroups: [mediaconvert.operators.dev]
  resources: [mediaconvertjobs/status]
  verbs: [get, patch, update]
- apiGroups: [mediaconvert.operators.dev]
  resources: [mediaconvertjobs/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
