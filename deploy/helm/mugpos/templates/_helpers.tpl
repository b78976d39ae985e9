{{/* Names and labels. */}}
{{- define "mugpos.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mugpos.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "mugpos.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mugpos.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mugpos.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mugpos.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mugpos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mugpos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mugpos
{{- end -}}

{{/* The image of a flavour (cpu or gpu): repository:tag-flavour. */}}
{{- define "mugpos.image" -}}
{{- $root := index . 0 -}}
{{- $flavour := index . 1 -}}
{{- if not (has $flavour (list "cpu" "gpu")) -}}
{{- fail (printf "image flavour %q: use cpu or gpu" $flavour) -}}
{{- end -}}
{{- $digest := get (default dict $root.Values.image.digests) $flavour -}}
{{- if $digest -}}
{{- printf "%s@%s" $root.Values.image.repository $digest -}}
{{- else -}}
{{- printf "%s:%s-%s" $root.Values.image.repository (default $root.Chart.AppVersion $root.Values.image.tag) $flavour -}}
{{- end -}}
{{- end -}}

{{- define "mugpos.secretName" -}}
{{- default (printf "%s-env" (include "mugpos.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* Stage sets, consumer groups and topics, as schemas/topics.py (TopicNames.pipeline_group,
role_group, images, prepared, detected) and agents.pipeline.consumer_group name them. */}}
{{- define "mugpos.orderedStages" -}}
{{- $stages := .stages -}}
{{- if has "all" $stages -}}
{{- if gt (len $stages) 1 -}}{{- fail "workers.*.stages: `all` stands alone" -}}{{- end -}}
all
{{- else -}}
{{- $ordered := list -}}
{{- range $s := $stages -}}
{{- if not (has $s (list "preprocess" "inference" "analysis")) -}}
{{- fail (printf "workers.*.stages: unknown stage %q (all, preprocess, inference, analysis)" $s) -}}
{{- end -}}
{{- end -}}
{{- range $s := list "preprocess" "inference" "analysis" -}}
{{- if has $s $stages -}}{{- $ordered = append $ordered $s -}}{{- end -}}
{{- end -}}
{{- join "," $ordered -}}
{{- end -}}
{{- end -}}

{{- define "mugpos.consumerGroup" -}}
{{- $root := index . 0 -}}
{{- $stages := include "mugpos.orderedStages" (index . 1) -}}
{{- if eq $stages "all" -}}
{{- printf "%s-pipeline" $root.Values.topics.prefix -}}
{{- else -}}
{{- printf "%s-pipeline-%s" $root.Values.topics.prefix (replace "," "-" $stages) -}}
{{- end -}}
{{- end -}}

{{/* The topics a role consumes, comma-separated. */}}
{{- define "mugpos.consumedTopics" -}}
{{- $root := index . 0 -}}
{{- $prefix := $root.Values.topics.prefix -}}
{{- $topics := list -}}
{{- range $s := splitList "," (include "mugpos.orderedStages" (index . 1)) -}}
{{- if or (eq $s "all") (eq $s "preprocess") -}}{{- $topics = append $topics (printf "%s.images.v1" $prefix) -}}{{- $topics = append $topics (printf "%s.uploads.v1" $prefix) -}}{{- end -}}
{{- if eq $s "inference" -}}{{- $topics = append $topics (printf "%s.stage.prepared.v1" $prefix) -}}{{- end -}}
{{- if eq $s "analysis" -}}{{- $topics = append $topics (printf "%s.stage.detected.v1" $prefix) -}}{{- end -}}
{{- end -}}
{{- join "," $topics -}}
{{- end -}}

{{/* Kafka security for KEDA's scaler. */}}
{{- define "mugpos.kafkaUsesSasl" -}}
{{- if has .Values.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL") -}}true{{- end -}}
{{- end -}}
{{- define "mugpos.kafkaUsesTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") -}}true{{- end -}}
{{- end -}}
{{- define "mugpos.kafkaNeedsAuth" -}}
{{- if or (include "mugpos.kafkaUsesSasl" .) (include "mugpos.kafkaUsesTls" .) -}}true{{- end -}}
{{- end -}}

{{/* The ports of kafka.bootstrap's brokers (host:port, comma-separated; 9092 where a broker names
none), comma-separated, for the webhook dispatcher's egress. */}}
{{- define "mugpos.kafkaPorts" -}}
{{- $ports := list -}}
{{- range $broker := splitList "," .Values.kafka.bootstrap -}}
{{- if trim $broker -}}
{{- $port := trimPrefix ":" (regexFind ":[0-9]+$" (trim $broker)) -}}
{{- $ports = append $ports (default "9092" $port) -}}
{{- end -}}
{{- end -}}
{{- join "," (uniq $ports) -}}
{{- end -}}

{{/* webhooks.allowNetworks as CIDRs (a bare address becomes /32 or /128), comma-separated. */}}
{{- define "mugpos.webhookNetworks" -}}
{{- $networks := list -}}
{{- range $n := .Values.webhooks.allowNetworks -}}
{{- $n = trim (toString $n) -}}
{{- if not (contains "/" $n) -}}
{{- $n = printf "%s/%s" $n (ternary "128" "32" (contains ":" $n)) -}}
{{- end -}}
{{- $networks = append $networks $n -}}
{{- end -}}
{{- join "," $networks -}}
{{- end -}}

{{/* Environment sources of every mugpos container. */}}
{{- define "mugpos.envFrom" -}}
- configMapRef:
    name: {{ include "mugpos.fullname" . }}-env
- secretRef:
    name: {{ include "mugpos.secretName" . }}
{{- end -}}

{{/* Volumes and mounts every mugpos container needs with a read-only root filesystem. */}}
{{- define "mugpos.volumes" -}}
{{- include "mugpos.volumesWithCache" (list . .Values.cache.volume) -}}
{{- end -}}

{{/* The same with another volume source for the cache (list root source): a pod that loads no
model gets a small emptyDir of its own rather than the shared model cache. */}}
{{- define "mugpos.volumesWithCache" -}}
{{- $root := index . 0 -}}
- name: cache
{{ toYaml (index . 1) | indent 2 }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- if $root.Values.kafka.tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ $root.Values.kafka.tls.secretName }}
{{- end }}
{{- end -}}

{{- define "mugpos.volumeMounts" -}}
- name: cache
  mountPath: /home/mugpos/.cache
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.secretName }}
- name: kafka-tls
  mountPath: /etc/mugpos/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "mugpos.podSecurity" -}}
securityContext:
{{ toYaml .Values.podSecurityContext | indent 2 }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{/* Pod annotation that rolls the pods when the configuration changes. */}}
{{- define "mugpos.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- end -}}

{{/* Plain settings (ConfigMap data). */}}
{{- define "mugpos.configData" -}}
{{- if hasKey .Values.config "MUGPOS_IDLE_SHUTDOWN_S" -}}
{{- fail "config.MUGPOS_IDLE_SHUTDOWN_S: must stay unset under a Deployment (an exit there is a restart loop); KEDA scales the workers" -}}
{{- end -}}
{{- if not (has .Values.kafka.securityProtocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) -}}
{{- fail "kafka.securityProtocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL" -}}
{{- end -}}
MUGPOS_KAFKA_BOOTSTRAP: {{ required "kafka.bootstrap is required" .Values.kafka.bootstrap | quote }}
MUGPOS_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- if include "mugpos.kafkaUsesSasl" . }}
MUGPOS_KAFKA_SASL_MECHANISM: {{ required "kafka.sasl.mechanism is required with SASL" .Values.kafka.sasl.mechanism | quote }}
MUGPOS_KAFKA_SASL_USERNAME: {{ required "kafka.sasl.username is required with SASL" .Values.kafka.sasl.username | quote }}
{{- end }}
{{- if .Values.kafka.tls.secretName }}
{{- if .Values.kafka.tls.caKey }}
MUGPOS_KAFKA_SSL_CAFILE: {{ printf "/etc/mugpos/kafka-tls/%s" .Values.kafka.tls.caKey | quote }}
{{- end }}
{{- if .Values.kafka.tls.certKey }}
MUGPOS_KAFKA_SSL_CERTFILE: {{ printf "/etc/mugpos/kafka-tls/%s" .Values.kafka.tls.certKey | quote }}
MUGPOS_KAFKA_SSL_KEYFILE: {{ printf "/etc/mugpos/kafka-tls/%s" (required "kafka.tls.keyKey is required with certKey" .Values.kafka.tls.keyKey) | quote }}
{{- end }}
{{- end }}
MUGPOS_TOPIC_PREFIX: {{ .Values.topics.prefix | quote }}
MUGPOS_TOPIC_PARTITIONS: {{ .Values.topics.partitions | quote }}
MUGPOS_TOPIC_REPLICATION: {{ .Values.topics.replication | quote }}
MUGPOS_MONGODB_DB: {{ .Values.mongodb.database | quote }}
MUGPOS_OBJECT_STORE: "s3"
{{- with .Values.objectStore.endpointUrl }}
MUGPOS_S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
MUGPOS_S3_BUCKET: {{ .Values.objectStore.bucket | quote }}
MUGPOS_S3_REGION: {{ .Values.objectStore.region | quote }}
{{- with .Values.objectStore.accessKeyId }}
MUGPOS_S3_ACCESS_KEY_ID: {{ . | quote }}
{{- end }}
{{- if and .Values.webhooks.enabled (hasKey .Values.config "MUGPOS_WEBHOOK_ALLOW_NETWORKS") }}
{{- fail "config.MUGPOS_WEBHOOK_ALLOW_NETWORKS: set webhooks.allowNetworks instead (it also opens the dispatcher's NetworkPolicy)" }}
{{- end }}
{{- if and .Values.webhooks.enabled .Values.webhooks.allowNetworks }}
{{- /* In the ConfigMap, not only the dispatcher's env: whatever else checks a webhook URL sees the same list. */}}
MUGPOS_WEBHOOK_ALLOW_NETWORKS: {{ splitList "," (include "mugpos.webhookNetworks" .) | toJson | quote }}
{{- end }}
{{- range $key, $value := .Values.config }}
{{- if not (hasPrefix "MUGPOS_" $key) }}
{{- fail (printf "config.%s: only MUGPOS_* settings belong here" $key) }}
{{- end }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Secret settings (Secret stringData), when the chart renders the Secret. */}}
{{- define "mugpos.secretData" -}}
MUGPOS_MONGODB_URI: {{ required "mongodb.uri is required (or existingSecret)" .Values.mongodb.uri | quote }}
MUGPOS_JWT_SECRET: {{ required "auth.jwtSecret is required (or existingSecret)" .Values.auth.jwtSecret | quote }}
{{- if .Values.webhooks.enabled }}
MUGPOS_ENCRYPTION_KEY: {{ required "auth.encryptionKey is required with webhooks.enabled: the dispatcher decrypts the endpoints' secrets with it (or existingSecret)" .Values.auth.encryptionKey | quote }}
{{- else if .Values.auth.encryptionKey }}
MUGPOS_ENCRYPTION_KEY: {{ .Values.auth.encryptionKey | quote }}
{{- end }}
{{- with .Values.auth.metricsToken }}
MUGPOS_METRICS_TOKEN: {{ . | quote }}
{{- end }}
{{- with .Values.redis.url }}
MUGPOS_REDIS_URL: {{ . | quote }}
{{- end }}
{{- with .Values.objectStore.secretAccessKey }}
MUGPOS_S3_SECRET_ACCESS_KEY: {{ . | quote }}
{{- end }}
{{- if include "mugpos.kafkaUsesSasl" . }}
MUGPOS_KAFKA_SASL_PASSWORD: {{ required "kafka.sasl.password is required with SASL (or existingSecret)" .Values.kafka.sasl.password | quote }}
{{- end }}
{{- end -}}

{{/* checkov findings this chart accepts, each with its reason (tests/deploy/test_checkov.py). */}}
{{- define "mugpos.checkovSkips" -}}
{{- $root := index . 0 -}}
{{- $flavour := index . 1 -}}
checkov.io/skip1: CKV_K8S_15=Images are pinned by version tag or digest, so IfNotPresent is safe and spares a registry round trip on every start (a GPU worker waking from zero)
checkov.io/skip2: CKV_K8S_35=mugpos reads its settings, secrets included, only from MUGPOS_* environment variables (core/config.py); the Secret comes in through envFrom and secrets are never logged
{{- if not (get (default dict $root.Values.image.digests) $flavour) }}
checkov.io/skip3: CKV_K8S_43=The image is pinned by its version tag; set image.digests.{{ $flavour }} to reference it by digest
{{- end }}
{{- end -}}

{{/* The enabled roles together run every stage exactly once: all (fused workers) alone, or
preprocess, inference and analysis split among roles, none in two roles (both would process its
messages, each in its own consumer group). */}}
{{- define "mugpos.checkRoles" -}}
{{- $seen := list -}}
{{- range $role, $w := .Values.workers -}}
{{- if $w.enabled -}}
{{- range $s := splitList "," (include "mugpos.orderedStages" $w) -}}
{{- if has $s $seen -}}
{{- fail (printf "workers.%s: stage %s already runs in another role" $role $s) -}}
{{- end -}}
{{- $seen = append $seen $s -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if has "all" $seen -}}
{{- if gt (len $seen) 1 -}}
{{- fail "workers: fused (`all`) workers and split roles cannot share the topics" -}}
{{- end -}}
{{- else if and $seen (not (eq (len $seen) 3)) -}}
{{- fail (printf "workers: the enabled roles run %s; preprocess, inference and analysis are all needed" (join "," $seen)) -}}
{{- end -}}
{{- end -}}
