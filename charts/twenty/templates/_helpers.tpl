{{/* Names and labels shared by every object of a release. */}}
{{- define "twenty.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "twenty.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "twenty.name" .) -}}
{{- end -}}

{{- define "twenty.labels" -}}
app.kubernetes.io/name: twenty
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: twenty
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
twentycrm/tier: {{ .Values.tier }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "server"). */}}
{{- define "twenty.selector" -}}
app.kubernetes.io/name: twenty
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "twenty.image" -}}
{{- if or (not .Values.image.tag) (eq .Values.image.tag "latest") -}}
{{- fail "image.tag must be a released Twenty version such as v2.45.6, never latest" -}}
{{- end -}}
{{- if not .Values.image.digest -}}
{{- fail "image.digest must be the sha256: digest of the image (images.lock.toml); images are pulled by digest only" -}}
{{- end -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- end -}}

{{- define "twenty.redisImage" -}}
{{ .Values.redis.image.repository }}@{{ .Values.redis.image.digest }}
{{- end -}}

{{/* The password comes from $(REDIS_PASSWORD), expanded by Kubernetes (letters and digits only). */}}
{{- define "twenty.redisUrl" -}}
redis://:$(REDIS_PASSWORD)@{{ .Values.redis.serviceName }}.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.redis.port }}
{{- end -}}

{{/*
The environment every Twenty process gets. Secret values come from the Secret the apps stack
writes; nothing here is empty (Twenty refuses empty variables). Migrations and cron registration
are off in the long-running processes: the backend release's hook Job does both, once.
*/}}
{{- define "twenty.env" -}}
- name: NODE_PORT
  value: {{ .Values.server.port | quote }}
- name: SERVER_URL
  value: {{ required "serverUrl is required" .Values.serverUrl | quote }}
- name: PG_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.secretName }}, key: PG_DATABASE_PASSWORD}
{{- with .Values.database }}
# Kubernetes expands $(PG_DATABASE_PASSWORD) from the variable above when the container starts.
- name: PG_DATABASE_URL
  value: {{ printf "postgres://%s:$(PG_DATABASE_PASSWORD)@%s:%v/%s" .user .host .port .name | quote }}
{{- end }}
- name: PG_SSL_ALLOW_SELF_SIGNED
  value: {{ .Values.database.allowSelfSignedTls | quote }}
- name: APP_SECRET
  valueFrom:
    secretKeyRef: {name: {{ .Values.secretName }}, key: APP_SECRET}
- name: ENCRYPTION_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.secretName }}, key: ENCRYPTION_KEY}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.secretName }}, key: REDIS_PASSWORD}
- name: REDIS_URL
  value: {{ include "twenty.redisUrl" . | quote }}
{{- with .Values.twenty }}
# Each process opens two pools of this size (core and workspace data sources): docs/settings.md, budget.
- name: PG_POOL_MAX_CONNECTIONS
  value: {{ .pgPoolMaxConnections | quote }}
- name: IS_MULTIWORKSPACE_ENABLED
  value: {{ .multiworkspace | quote }}
- name: IS_WORKSPACE_CREATION_LIMITED_TO_SERVER_ADMINS
  value: {{ .workspaceCreationLimitedToAdmins | quote }}
- name: TELEMETRY_ENABLED
  value: {{ .telemetry | quote }}
{{- if .email.enabled }}
- name: EMAIL_DRIVER
  value: "SMTP"
- name: EMAIL_SMTP_HOST
  value: {{ required "twenty.email.host is required" .email.host | quote }}
- name: EMAIL_SMTP_PORT
  value: {{ .email.port | quote }}
- name: EMAIL_SMTP_USER
  value: {{ required "twenty.email.user is required" .email.user | quote }}
- name: EMAIL_FROM_ADDRESS
  value: {{ required "twenty.email.fromAddress is required" .email.fromAddress | quote }}
- name: EMAIL_FROM_NAME
  value: {{ .email.fromName | quote }}
{{- else }}
# No SMTP: Twenty logs the mails it would send (invitations, password resets).
- name: EMAIL_DRIVER
  value: "LOGGER"
{{- end }}
{{- end }}
{{- if .Values.twenty.email.enabled }}
- name: EMAIL_SMTP_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.secretName }}, key: EMAIL_SMTP_PASSWORD}
{{- end }}
- name: STORAGE_TYPE
  value: "s3"
- name: STORAGE_S3_REGION
  value: {{ required "storage.s3.region is required" .Values.storage.s3.region | quote }}
- name: STORAGE_S3_NAME
  value: {{ required "storage.s3.bucket is required" .Values.storage.s3.bucket | quote }}
- name: HOME
  value: /home/twenty
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "twenty.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Call with (dict "readOnly" <bool>). */}}
{{- define "twenty.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnly }}
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Writable paths for a read-only root filesystem: /tmp and HOME. */}}
{{- define "twenty.scratchVolumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 1Gi}
- name: home
  emptyDir: {sizeLimit: 256Mi}
{{- end -}}

{{- define "twenty.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/twenty
{{- end -}}

{{/* Call with (dict "root" $ "component" "server"). */}}
{{- define "twenty.topologySpread" -}}
- maxSkew: {{ .root.Values.topologySpread.maxSkew }}
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: {{ .root.Values.topologySpread.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "twenty.selector" . | nindent 6 }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "twenty.selector" . | nindent 6 }}
{{- end -}}

{{- define "twenty.migrationServiceAccountName" -}}
{{- printf "%s-migrate" (include "twenty.name" .) -}}
{{- end -}}

{{/* Labels of Redis's pods: as twenty.labels, with Redis's version instead of Twenty's. */}}
{{- define "twenty.redisLabels" -}}
app.kubernetes.io/name: twenty
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.redis.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: twenty
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
twentycrm/tier: {{ .Values.tier }}
{{- end -}}

{{/* The pods and Deployments the "stop" hook stops: Twenty's servers and workers of every release. */}}
{{- define "twenty.stopSelector" -}}
app.kubernetes.io/part-of=twenty,app.kubernetes.io/component in (server,worker)
{{- end -}}

{{/* Whether an upgrade must stop the old pods: "true" unless the live worker Deployment ("worker", from Helm's
lookup; an empty map when there is none or no cluster to ask, as in `helm template`) already carries the Twenty
tag being installed ("tag"). So only a new Twenty version stops the server and worker; a change of anything else
(SMTP, replicas, database host, a chart edit) rolls them as usual. */}}
{{- define "twenty.stopNeeded" -}}
{{- $running := dig "metadata" "labels" "app.kubernetes.io/version" "" .worker -}}
{{- if ne $running .tag }}true{{ end -}}
{{- end -}}

{{/* Hook annotations of the "stop" hook's objects; call with the weight. Deleted once every pre-upgrade hook
succeeded (Helm runs the hooks, then deletes those with hook-succeeded), or before the next one is created. */}}
{{- define "twenty.stopHookAnnotations" -}}
helm.sh/hook: pre-upgrade
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}
