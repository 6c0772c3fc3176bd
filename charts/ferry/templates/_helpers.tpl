{{/*
The chart name, or nameOverride.
*/}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or <release>-<name> (just <release>
when it already contains the name). Truncated to 63 characters (DNS label).
*/}}
{{- define "ferry.fullname" -}}
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

{{/*
A name derived from the full name with a suffix, still at most 63 characters.
Usage: include "ferry.suffixed" (list . "sftp")
*/}}
{{- define "ferry.suffixed" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "ferry.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

{{- define "ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "ferry.labels" -}}
helm.sh/chart: {{ include "ferry.chart" . }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferry
{{- end }}

{{/*
Labels that select the controller pods (Deployment selector, Services, PodDisruptionBudget).
*/}}
{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/*
The controller's ServiceAccount.
*/}}
{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository:tag, or repository:tag@digest.
*/}}
{{- define "ferry.image" -}}
{{- $tag := default .Chart.AppVersion (toString .Values.image.tag) }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
"true" when the controller runs with --leader-elect (asked for, or more than one replica).
*/}}
{{- define "ferry.leaderElect" -}}
{{- if or .Values.controller.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "ferry.leaseName" -}}
{{- default (include "ferry.fullname" .) .Values.controller.leaderElection.leaseName }}
{{- end }}

{{/*
The PersistentVolumeClaim mounted at /data, or "" when /data is an emptyDir.
*/}}
{{- define "ferry.claimName" -}}
{{- if .Values.persistence.enabled }}
{{- default (include "ferry.suffixed" (list . "data")) .Values.persistence.existingClaim }}
{{- end }}
{{- end }}

{{/*
The controller's command-line arguments. One flag per line, `--flag=value`: adjust them here,
or append with controller.extraArgs.
*/}}
{{- define "ferry.args" -}}
- controller
{{- if eq .Values.state.backend "sqlite" }}
- --state={{ .Values.state.sqlite.path }}
{{- end }}
{{- if .Values.watchNamespace }}
- --watch-namespace={{ .Values.watchNamespace }}
{{- end }}
{{- if include "ferry.leaderElect" . }}
- --leader-elect
- --lease-name={{ include "ferry.leaseName" . }}
- --lease-namespace={{ .Release.Namespace }}
{{- end }}
- --metrics-listen=0.0.0.0:{{ .Values.metrics.port }}
{{- if .Values.sftp.enabled }}
- --sftp-listen=0.0.0.0:{{ .Values.sftp.containerPort }}
{{- end }}
- --log-format={{ .Values.controller.logFormat }}
{{- if eq .Values.executor "job" }}
- --executor=job
- --job-template=/etc/ferry/job-template/job.yaml
{{- end }}
{{- with .Values.controller.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Refuses value combinations the schema cannot express.
*/}}
{{- define "ferry.validateValues" -}}
{{- if and (eq .Values.state.backend "sqlite") (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount is %d but state.backend is sqlite: SQLite on a volume allows one replica; use state.backend: postgres (with state.postgres.existingSecret) for several replicas with leader election" (int .Values.replicaCount)) }}
{{- end }}
{{- if and (eq .Values.state.backend "postgres") (not .Values.state.postgres.existingSecret) }}
{{- fail "state.backend is postgres: set state.postgres.existingSecret to the Secret holding the PostgreSQL URL (key state.postgres.key)" }}
{{- end }}
{{- if and (eq .Values.executor "job") (ne .Values.state.backend "postgres") }}
{{- fail "executor is job but state.backend is sqlite: the runs' Jobs share the state with the controller, which needs state.backend: postgres (with state.postgres.existingSecret)" }}
{{- end }}
{{- if and (eq .Values.state.backend "sqlite") (not (hasPrefix "/data/" .Values.state.sqlite.path)) }}
{{- fail (printf "state.sqlite.path %q must be under /data/ (the persistent volume)" .Values.state.sqlite.path) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be less than replicaCount (%d), or no node could ever be drained" (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.sftp.enabled (gt (int .Values.replicaCount) 1) (not (and .Values.persistence.enabled (or .Values.persistence.existingClaim (has "ReadWriteMany" .Values.persistence.accessModes)))) }}
{{- fail (printf "sftp.enabled with replicaCount %d: the hosted SFTP server's host key and users' files must be the same on every replica (the leader serves them, and a new leader must present the same host key); set persistence.enabled with persistence.accessModes [ReadWriteMany] (or an existingClaim that is), or sftp.enabled: false" (int .Values.replicaCount)) }}
{{- end }}
{{- end }}
