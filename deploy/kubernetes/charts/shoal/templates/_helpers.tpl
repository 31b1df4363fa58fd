{{/* The chart's name, or nameOverride. */}}
{{- define "shoal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-shoal, or the release name alone when it holds the chart's. */}}
{{- define "shoal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "shoal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "shoal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "shoal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shoal.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}
{{- end }}

{{- define "shoal.secretName" -}}
{{- default (printf "%s-secrets" (include "shoal.fullname" .)) .Values.secrets.name }}
{{- end }}

{{- define "shoal.credentialsName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else if .Values.credentials.dockerConfigJson }}
{{- printf "%s-registry-credentials" (include "shoal.fullname" .) }}
{{- end }}
{{- end }}

{{/*
shoal.bytes turns a size (a number of bytes, or a quantity with a Ki, Mi, Gi
or Ti suffix) into a number of bytes.
*/}}
{{- define "shoal.bytes" -}}
{{- $s := toString . }}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- $n := "" }}
{{- range $suffix, $mult := $units }}
{{- if hasSuffix $suffix $s }}
{{- $n = mul (trimSuffix $suffix $s | int64) $mult }}
{{- end }}
{{- end }}
{{- if eq (toString $n) "" }}
{{- if not (regexMatch "^[0-9]+$" $s) }}
{{- fail (printf "size %q: want bytes, or a number with Ki, Mi, Gi or Ti" $s) }}
{{- end }}
{{- $n = $s | int64 }}
{{- end }}
{{- $n }}
{{- end }}

{{/* The --registry and --insecure-registry flags, one per line, for args. */}}
{{- define "shoal.registryArgs" -}}
{{- range .Values.registries }}
- --registry={{ .host }}{{ with get . "endpoint" }}={{ . }}{{ end }}
{{- end }}
{{- range .Values.insecureRegistries }}
- --insecure-registry={{ . }}
{{- end }}
{{- end }}

{{/* The volumes every shoal pod mounts its secrets from. */}}
{{- define "shoal.secretVolumes" -}}
- name: secrets
  secret:
    secretName: {{ include "shoal.secretName" . }}
    defaultMode: 0440
{{- with include "shoal.credentialsName" . }}
- name: registry-credentials
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: .dockerconfigjson
        path: config.json
{{- end }}
{{- end }}

{{- define "shoal.secretMounts" -}}
- name: secrets
  mountPath: /etc/shoal/secrets
  readOnly: true
{{- if include "shoal.credentialsName" . }}
- name: registry-credentials
  mountPath: /etc/shoal/registry
  readOnly: true
{{- end }}
{{- end }}

{{/* The flags that follow from the secrets and p2p settings. */}}
{{- define "shoal.commonArgs" -}}
- --log-format={{ .Values.logFormat }}
- --log-level={{ .Values.logLevel }}
- --p2p-security={{ .Values.p2p.security }}
- --p2p-listen=/ip4/0.0.0.0/tcp/{{ .Values.p2p.port }}
{{- if .Values.p2p.psk }}
- --p2p-psk-file=/etc/shoal/secrets/psk
{{- end }}
{{- if include "shoal.credentialsName" . }}
- --docker-config=/etc/shoal/registry/config.json
{{- end }}
{{- end }}

{{/* A memory quantity's GOMEMLIMIT: ratio of it, in bytes. */}}
{{- define "shoal.goMemLimit" -}}
{{- $bytes := include "shoal.bytes" .limit | float64 }}
{{- printf "%.0f" (mulf $bytes .ratio) }}
{{- end }}

{{- define "shoal.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The arguments of `shoal configure containerd` for the agent at .agentURL,
with --undo when .undo is set.
*/}}
{{- define "shoal.configureArgs" -}}
- configure
- containerd
- --root=/host
- --agent={{ .agentURL }}
{{- range .root.Values.registries }}
- --registry={{ .host }}{{ with get . "endpoint" }}={{ . }}{{ end }}
{{- end }}
{{- if get . "undo" }}
- --undo
{{- end }}
{{- end }}
