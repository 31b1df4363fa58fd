{{/*
The tracker's pod template, for its Deployment (one replica) or its
StatefulSet (several: a store per pod, spread over nodes).
*/}}
{{- define "shoal.trackerPod" -}}
{{- $fullname := include "shoal.fullname" . }}
{{- $t := .Values.tracker }}
{{- $many := gt (int $t.replicas) 1 -}}
metadata:
  labels:
    {{- include "shoal.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: tracker
  {{- with $t.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
  containers:
    - name: tracker
      image: {{ include "shoal.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - tracker
        - --listen=0.0.0.0:{{ $t.port }}
        - --data-dir=/var/lib/shoal
        - --token-file=/etc/shoal/secrets/token
        - --announce-interval={{ $t.announceInterval }}
        - --store-capacity={{ include "shoal.bytes" $t.store.capacity }}
        - --upload-rate={{ $t.uploadRate | int64 }}
        - --download-rate={{ $t.downloadRate | int64 }}
        {{- if $t.seedJobs }}
        - --seed-token-file=/etc/shoal/secrets/seed-token
        {{- if $many }}
        {{- /* A webhook reaches one replica: it passes it on to the others. */}}
        - --replicas={{ include "shoal.trackerURL" . }}
        {{- if eq $t.discovery "list" }}
        - --replica-self={{ include "shoal.trackerScheme" . }}://$(POD_NAME).{{ include "shoal.trackerHeadless" . }}.{{ .Release.Namespace }}.svc:{{ $t.port }}
        {{- else }}
        - --replica-self=$(POD_IP)
        {{- end }}
        {{- if $t.tls.existingSecret }}
        - --replicas-ca=/etc/shoal/tracker-tls/ca.crt
        {{- end }}
        {{- end }}
        {{- end }}
        {{- if $t.tls.existingSecret }}
        - --tls-cert=/etc/shoal/tracker-tls/tls.crt
        - --tls-key=/etc/shoal/tracker-tls/tls.key
        {{- end }}
        {{- include "shoal.commonArgs" . | nindent 8 }}
        {{- with include "shoal.registryArgs" . | trim }}{{ . | nindent 8 }}{{ end }}
        {{- with $t.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        - name: GOMEMLIMIT
          value: {{ include "shoal.goMemLimit" (dict "limit" $t.resources.limits.memory "ratio" .Values.agent.goMemLimitRatio) | quote }}
        {{- if and $many $t.seedJobs }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        {{- end }}
      ports:
        - name: http
          containerPort: {{ $t.port }}
          protocol: TCP
        - name: p2p
          containerPort: {{ .Values.p2p.port }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
          {{- if $t.tls.existingSecret }}
          scheme: HTTPS
          {{- end }}
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /healthz
          port: http
          {{- if $t.tls.existingSecret }}
          scheme: HTTPS
          {{- end }}
        periodSeconds: 5
      resources:
        {{- toYaml $t.resources | nindent 8 }}
      securityContext:
        {{- include "shoal.containerSecurity" . | nindent 8 }}
      volumeMounts:
        - name: store
          mountPath: /var/lib/shoal
        - name: tmp
          mountPath: /tmp
        {{- include "shoal.secretMounts" . | nindent 8 }}
        {{- if $t.tls.existingSecret }}
        - name: tracker-tls
          mountPath: /etc/shoal/tracker-tls
          readOnly: true
        {{- end }}
  volumes:
    {{- if not (and $many $t.store.persistence.enabled) }}
    - name: store
      {{- if $t.store.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ $fullname }}-tracker-store
      {{- else }}
      emptyDir:
        sizeLimit: {{ $t.store.persistence.size }}
      {{- end }}
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- include "shoal.secretVolumes" . | nindent 4 }}
    {{- with $t.tls.existingSecret }}
    - name: tracker-tls
      secret:
        secretName: {{ . }}
        defaultMode: 0440
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
          {{- if and $many $t.seedJobs }}
          - key: ca.crt
            path: ca.crt
          {{- end }}
    {{- end }}
  {{- with $t.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- else }}
  {{- if and $many (ne $t.antiAffinity "none") }}
  # Replicas on different nodes, so that a node's loss takes one only.
  affinity:
    podAntiAffinity:
      {{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (merge (include "shoal.selectorLabels" . | fromYaml) (dict "app.kubernetes.io/component" "tracker"))) }}
      {{- if eq $t.antiAffinity "required" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        {{- list $term | toYaml | nindent 8 }}
      {{- else if eq $t.antiAffinity "preferred" }}
      preferredDuringSchedulingIgnoredDuringExecution:
        {{- list (dict "weight" 100 "podAffinityTerm" $term) | toYaml | nindent 8 }}
      {{- else }}
      {{- fail (printf "tracker.antiAffinity %q: want preferred, required or none" $t.antiAffinity) }}
      {{- end }}
  {{- end }}
  {{- end }}
{{- end }}

{{/* Whether the tracker runs as several replicas: "true" or "". */}}
{{- define "shoal.trackerReplicated" -}}
{{- $n := int .Values.tracker.replicas }}
{{- if lt $n 1 }}{{ fail (printf "tracker.replicas %d: want 1 or more" $n) }}{{ end }}
{{- if gt $n 1 }}true{{ end }}
{{- end }}

{{/* The tracker API's scheme. */}}
{{- define "shoal.trackerScheme" -}}
{{- if .Values.tracker.tls.existingSecret }}https{{ else }}http{{ end }}
{{- end }}

{{/* The headless Service whose addresses are the tracker replicas. */}}
{{- define "shoal.trackerHeadless" -}}
{{ include "shoal.fullname" . }}-tracker-headless
{{- end }}

{{/*
The agents' and seed jobs' --tracker: the Service of the one tracker; with
replicas, dns+ on the headless Service (every ready pod's address a
replica) or the list of the pods' stable names.
*/}}
{{- define "shoal.trackerURL" -}}
{{- $t := .Values.tracker }}
{{- $scheme := include "shoal.trackerScheme" . }}
{{- $headless := printf "%s.%s.svc" (include "shoal.trackerHeadless" .) .Release.Namespace }}
{{- if not (include "shoal.trackerReplicated" .) -}}
{{ $scheme }}://{{ include "shoal.fullname" . }}-tracker.{{ .Release.Namespace }}.svc:{{ $t.port }}
{{- else if eq $t.discovery "dns" -}}
dns+{{ $scheme }}://{{ $headless }}:{{ $t.port }}
{{- else if eq $t.discovery "list" -}}
{{- $urls := list }}
{{- range $i := until (int $t.replicas) }}
{{- $urls = append $urls (printf "%s://%s-tracker-%d.%s:%v" $scheme (include "shoal.fullname" $) $i $headless $t.port) }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- fail (printf "tracker.discovery %q: want dns or list" $t.discovery) }}
{{- end }}
{{- end }}

{{/*
The names the tracker's TLS certificate must carry, one per line: the host
agents dial and send as SNI (a dns+ name is asked for at each address with
the name itself), and the Service's name for the status page.
*/}}
{{- define "shoal.trackerDNSNames" -}}
{{- $svc := printf "%s-tracker.%s.svc" (include "shoal.fullname" .) .Release.Namespace }}
{{- $headless := printf "%s.%s.svc" (include "shoal.trackerHeadless" .) .Release.Namespace }}
{{- if not (include "shoal.trackerReplicated" .) }}
- {{ $svc }}
{{- else if eq .Values.tracker.discovery "dns" }}
- {{ $headless }}
- {{ $svc }}
{{- else }}
- "*.{{ $headless }}"
- {{ $svc }}
{{- end }}
{{- end }}
