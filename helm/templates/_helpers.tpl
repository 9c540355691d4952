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

{{/* The image: registry/repository, then @digest if given, else :tag (default: appVersion). */}}
{{- define "sfn.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repository = printf "%s/%s" .Values.image.registry $repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The telemetry path the exporter serves (config.web.telemetry_path, default /metrics). */}}
{{- define "sfn.telemetryPath" -}}
{{- (.Values.config.web | default dict).telemetry_path | default "/metrics" -}}
{{- end -}}

{{/* http or https, as the web configuration file says. */}}
{{- define "sfn.scheme" -}}
{{- if .Values.web.tls -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* One scrape endpoint, for the ServiceMonitor and the PodMonitor. */}}
{{- define "sfn.scrapeEndpoint" -}}
path: {{ include "sfn.telemetryPath" . }}
interval: {{ .monitor.interval }}
scrapeTimeout: {{ .monitor.scrapeTimeout }}
scheme: {{ .monitor.scheme | default (include "sfn.scheme" .) }}
{{- with .monitor.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
