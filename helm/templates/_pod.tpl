{{/* The pod template of the Deployment and of the sharded StatefulSet. */}}
{{- define "sfn.podTemplate" -}}
metadata:
  annotations:
    checksum/config: {{ include "sfn.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "sfn.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "sfn.serviceAccountName" . }}
  # The exporter never calls the Kubernetes API (IRSA and Pod Identity mount their own token).
  automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml .Values.topologySpreadConstraints | nindent 4 }}
  {{- else if gt (int .Values.sharding.shards) 1 }}
  # shards on different nodes and zones where they can be: one node's loss stops one shard
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "sfn.selectorLabels" . | nindent 10 }}
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "sfn.selectorLabels" . | nindent 10 }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: exporter
      image: {{ include "sfn.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config=/etc/sfn-exporter/config.yaml
        - --log.format=json
        {{- if gt (int .Values.sharding.shards) 1 }}
        # each pod's shard is its StatefulSet ordinal, read from POD_NAME
        - --total-shards={{ .Values.sharding.shards }}
        {{- end }}
        {{- if .Values.web.configSecret }}
        - --web.config.file=/etc/sfn-exporter-web/web.yml
        {{- end }}
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      env:
        {{- if gt (int .Values.sharding.shards) 1 }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with .Values.aws.region }}
        - name: AWS_REGION
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.otlp.endpoint }}
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ . | quote }}
        {{- end }}
        - name: OTEL_EXPORTER_OTLP_PROTOCOL
          value: {{ .Values.otlp.protocol | quote }}
        - name: OTEL_SERVICE_NAME
          value: {{ .Values.serviceName | quote }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
          scheme: {{ include "sfn.scheme" . | upper }}
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
          scheme: {{ include "sfn.scheme" . | upper }}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      startupProbe:
        httpGet:
          path: /healthz
          port: metrics
          scheme: {{ include "sfn.scheme" . | upper }}
        periodSeconds: 2
        failureThreshold: 30
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/sfn-exporter
          readOnly: true
        - name: checkpoint
          mountPath: /var/lib/sfn-exporter
        - name: tmp
          mountPath: /tmp
        {{- if .Values.web.configSecret }}
        - name: web
          mountPath: /etc/sfn-exporter-web
          readOnly: true
        {{- end }}
    {{- with .Values.extraContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "sfn.fullname" . }}
    {{- if le (int .Values.sharding.shards) 1 }}
    - name: checkpoint
      {{- if .Values.checkpoint.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ .Values.checkpoint.persistence.existingClaim | default (include "sfn.fullname" .) }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- end }}
    - name: tmp
      emptyDir: {}
    {{- if .Values.web.configSecret }}
    - name: web
      secret:
        secretName: {{ .Values.web.configSecret }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
