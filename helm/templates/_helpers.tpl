{{- define "sfn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sfn.fullname" -}}
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

{{- define "sfn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sfn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sfn.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sfn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sfn.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sfn.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The exporter's configuration: the user's, with what the chart decides. */}}
{{- define "sfn.config" -}}
{{- $chart := dict
  "web" (dict "listen_address" (printf ":%d" (int .Values.service.port)))
  "checkpoint" (dict "path" "/var/lib/sfn-exporter/checkpoint.sqlite")
  "shutdown" (dict "grace_period_seconds" (sub (int .Values.terminationGracePeriodSeconds) 5))
  "otlp" (dict "enabled" (ne .Values.otlp.endpoint ""))
-}}
{{- toYaml (mergeOverwrite (deepCopy .Values.config) $chart) -}}
{{- end -}}
