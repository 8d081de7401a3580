{{/* Names and labels. */}}

{{- define "leadstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; role resources add "-ROLE", so it stays under 52 characters. */}}
{{- define "leadstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "leadstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "leadstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "leadstream.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of one role's resources: (dict "root" $ "role" "collector"). */}}
{{- define "leadstream.roleLabels" -}}
{{ include "leadstream.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{/* Selector of one role's pods: (dict "root" $ "role" "collector"). */}}
{{- define "leadstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "leadstream.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "leadstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leadstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "leadstream.secretName" -}}
{{- default (printf "%s-secrets" (include "leadstream.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "leadstream.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "leadstream.fullname" .)) .Values.rules.existingConfigMap }}
{{- end }}

{{/* The roles the release runs, as a JSON list: the notifier only with notifier.enabled. */}}
{{- define "leadstream.roles" -}}
{{- $roles := list "collector" "processor" "sink" }}
{{- if .Values.notifier.enabled }}{{ $roles = append $roles "notifier" }}{{ end }}
{{- $roles | toJson }}
{{- end }}

{{- define "leadstream.notifyConfigMap" -}}
{{- default (printf "%s-destinations" (include "leadstream.fullname" .)) .Values.notifier.config.existingConfigMap }}
{{- end }}

{{/* Whether a rules file is mounted. */}}
{{- define "leadstream.hasRules" -}}
{{- if or .Values.rules.content .Values.rules.existingConfigMap }}true{{ end }}
{{- end }}

{{/*
Settings.

leadstream.setting renders one ConfigMap entry, (list "LEADSTREAM_X" value),
or nothing when the value is empty ("" or null), so the role keeps its own
default. Numbers come out as integers: Helm reads YAML numbers as float64,
which would print 67108864 as 6.7108864e+07, a value no flag accepts.
*/}}
{{- define "leadstream.setting" -}}
{{- $v := index . 1 }}
{{- if not (or (kindIs "invalid" $v) (and (kindIs "string" $v) (eq $v ""))) }}
{{- if kindIs "float64" $v }}{{ $v = int64 $v }}{{ end }}
{{ index . 0 }}: {{ toString $v | quote }}
{{- end }}
{{- end }}

{{/* Where the files of Secrets and ConfigMaps are mounted. */}}
{{- define "leadstream.secretsDir" }}/etc/leadstream/secrets{{ end }}
{{- define "leadstream.rulesDir" }}/etc/leadstream/rules{{ end }}
{{- define "leadstream.notifyDir" }}/etc/leadstream/notify{{ end }}
{{- define "leadstream.tlsDir" }}/etc/leadstream/tls/{{ . }}{{ end }}

{{/*
The secret keys, with the variable each is read through. The chart sets only
LEADSTREAM_…_FILE, never the variable holding the secret itself. Besides
these, notify-NAME keys (secrets.notify.NAME) are files the notifier's
destinations file reads itself ({file: /etc/leadstream/secrets/notify-NAME}).
*/}}
{{- define "leadstream.secretKeyEnv" -}}
write-keys: LEADSTREAM_WRITE_KEYS_FILE
server-write-keys: LEADSTREAM_SERVER_WRITE_KEYS_FILE
secret-key: LEADSTREAM_SECRET_KEY_FILE
token-keys: LEADSTREAM_TOKEN_KEYS_FILE
identity-keys: LEADSTREAM_IDENTITY_KEYS_FILE
redis-password: LEADSTREAM_REDIS_PASSWORD_FILE
collector-redis-password: LEADSTREAM_REDIS_PASSWORD_FILE
clickhouse-password: LEADSTREAM_CLICKHOUSE_PASSWORD_FILE
kafka-sasl-password: LEADSTREAM_KAFKA_SASL_PASSWORD_FILE
{{- end }}

{{/* The values of the Secret the chart creates, by key. */}}
{{- define "leadstream.secretValues" -}}
write-keys: {{ .Values.secrets.writeKeys | quote }}
server-write-keys: {{ .Values.secrets.serverWriteKeys | quote }}
secret-key: {{ .Values.secrets.secretKey | quote }}
token-keys: {{ .Values.secrets.tokenKeys | quote }}
identity-keys: {{ .Values.secrets.identityKeys | quote }}
redis-password: {{ .Values.secrets.redisPassword | quote }}
collector-redis-password: {{ .Values.secrets.collectorRedisPassword | quote }}
clickhouse-password: {{ .Values.secrets.clickhousePassword | quote }}
kafka-sasl-password: {{ .Values.secrets.kafkaSaslPassword | quote }}
{{- range $name, $value := .Values.secrets.notify }}
{{ printf "notify-%s" $name }}: {{ $value | quote }}
{{- end }}
{{- end }}

{{/* The secret keys that are set, as a JSON list: existingSecretKeys, or the non-empty values. */}}
{{- define "leadstream.secretKeys" -}}
{{- $keys := list }}
{{- if .Values.secrets.existingSecret }}
{{- $known := include "leadstream.secretKeyEnv" . | fromYaml }}
{{- range .Values.secrets.existingSecretKeys }}
{{- if not (or (hasKey $known .) (hasPrefix "notify-" .)) }}
{{- fail (printf "secrets.existingSecretKeys: %q is not a leadstream secret (%s, or notify-NAME for the notifier)" . (keys $known | sortAlpha | join ", ")) }}
{{- end }}
{{- $keys = append $keys . }}
{{- end }}
{{- else }}
{{- range $k, $v := include "leadstream.secretValues" . | fromYaml }}
{{- if $v }}{{ $keys = append $keys $k }}{{ end }}
{{- end }}
{{- end }}
{{- $keys | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
The secrets one role reads, as YAML key: VARIABLE: (dict "root" $ "role" "collector").
Each role mounts only these keys of the Secret. The notifier's notify-NAME keys
have no variable (null): its destinations file names their files.
*/}}
{{- define "leadstream.roleSecrets" -}}
{{- $v := .root.Values }}
{{- $have := include "leadstream.secretKeys" .root | fromJsonArray }}
{{- $env := include "leadstream.secretKeyEnv" .root | fromYaml }}
{{- $want := list "kafka-sasl-password" }}
{{- if eq .role "collector" }}
{{- $want = concat $want (list "write-keys" "server-write-keys" "secret-key" "token-keys" "identity-keys" "clickhouse-password") }}
{{- if $v.collector.redis.enabled }}
{{- $want = append $want (ternary "collector-redis-password" "redis-password" (has "collector-redis-password" $have)) }}
{{- end }}
{{- else if eq .role "processor" }}
{{- $want = append $want "redis-password" }}
{{- else if eq .role "sink" }}
{{- $want = append $want "clickhouse-password" }}
{{- else if eq .role "notifier" }}
{{- $want = append $want "clickhouse-password" }}
{{- range $have }}
{{- if hasPrefix "notify-" . }}{{ $want = append $want . }}{{ end }}
{{- end }}
{{- end }}
{{- range $want }}
{{- if has . $have }}
{{ . }}: {{ if hasKey $env . }}{{ get $env . }}{{ else }}null{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
TLS settings of one service: (dict "prefix" "LEADSTREAM_KAFKA" "name" "kafka" "tls" .Values.kafka.tls).
*/}}
{{- define "leadstream.tlsSettings" -}}
{{- $t := .tls }}
{{- include "leadstream.setting" (list (printf "%s_TLS" .prefix) $t.enabled) }}
{{- if $t.enabled }}
{{- $dir := include "leadstream.tlsDir" .name }}
{{- if $t.ca }}{{ include "leadstream.setting" (list (printf "%s_TLS_CA_FILE" .prefix) (printf "%s/%s" $dir $t.ca)) }}{{ end }}
{{- if $t.cert }}{{ include "leadstream.setting" (list (printf "%s_TLS_CERT_FILE" .prefix) (printf "%s/%s" $dir $t.cert)) }}{{ end }}
{{- if $t.key }}{{ include "leadstream.setting" (list (printf "%s_TLS_KEY_FILE" .prefix) (printf "%s/%s" $dir $t.key)) }}{{ end }}
{{- end }}
{{- end }}

{{/* The Kafka settings every role has. */}}
{{- define "leadstream.kafkaSettings" -}}
{{- $k := .Values.kafka }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_BROKERS" $k.brokers) }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_TOPIC_PREFIX" $k.topicPrefix) }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_PARTITIONS" $k.partitions) }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_REPLICATION_FACTOR" $k.replicationFactor) }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_MIN_INSYNC_REPLICAS" $k.minInsyncReplicas) }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_RETENTION" $k.retention) }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_SESSION_TIMEOUT" $k.sessionTimeout) }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_COMPRESSION" $k.compression) }}
{{- include "leadstream.tlsSettings" (dict "prefix" "LEADSTREAM_KAFKA" "name" "kafka" "tls" $k.tls) }}
{{- if $k.tls.enabled }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_TLS_SERVER_NAME" $k.tls.serverName) }}
{{- end }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_SASL_MECHANISM" $k.sasl.mechanism) }}
{{- include "leadstream.setting" (list "LEADSTREAM_KAFKA_SASL_USERNAME" $k.sasl.username) }}
{{- end }}

{{/* The Redis settings of the processor and the collector: (dict "root" $ "username" USER). */}}
{{- define "leadstream.redisSettings" -}}
{{- $r := .root.Values.redis }}
{{- include "leadstream.setting" (list "LEADSTREAM_REDIS_ADDR" $r.addr) }}
{{- include "leadstream.setting" (list "LEADSTREAM_REDIS_CLUSTER" $r.cluster) }}
{{- include "leadstream.setting" (list "LEADSTREAM_REDIS_USERNAME" .username) }}
{{- include "leadstream.setting" (list "LEADSTREAM_REDIS_DB" $r.db) }}
{{- include "leadstream.tlsSettings" (dict "prefix" "LEADSTREAM_REDIS" "name" "redis" "tls" $r.tls) }}
{{- if $r.tls.enabled }}
{{- include "leadstream.setting" (list "LEADSTREAM_REDIS_TLS_SERVER_NAME" $r.tls.serverName) }}
{{- end }}
{{- end }}

{{/* The ClickHouse settings of the sink and the collector (DELETE /v1/leads/{id}). */}}
{{- define "leadstream.clickhouseSettings" -}}
{{- $ch := .Values.clickhouse }}
{{- include "leadstream.setting" (list "LEADSTREAM_CLICKHOUSE_ADDR" $ch.addr) }}
{{- include "leadstream.setting" (list "LEADSTREAM_CLICKHOUSE_DATABASE" $ch.database) }}
{{- include "leadstream.setting" (list "LEADSTREAM_CLICKHOUSE_USERNAME" $ch.username) }}
{{- include "leadstream.setting" (list "LEADSTREAM_CLICKHOUSE_DIAL_TIMEOUT" $ch.dialTimeout) }}
{{- include "leadstream.setting" (list "LEADSTREAM_CLICKHOUSE_CLUSTER" $ch.cluster) }}
{{- include "leadstream.tlsSettings" (dict "prefix" "LEADSTREAM_CLICKHOUSE" "name" "clickhouse" "tls" $ch.tls) }}
{{- if $ch.tls.enabled }}
{{- include "leadstream.setting" (list "LEADSTREAM_CLICKHOUSE_TLS_SERVER_NAME" $ch.tls.serverName) }}
{{- end }}
{{- end }}

{{/* The settings of the log every role writes. */}}
{{- define "leadstream.logSettings" -}}
{{- include "leadstream.setting" (list "LEADSTREAM_LOG_LEVEL" .Values.log.level) }}
{{- include "leadstream.setting" (list "LEADSTREAM_LOG_FORMAT" .Values.log.format) }}
{{- end }}

{{/* The files of the role's secrets: (dict "root" $ "role" "collector"). */}}
{{- define "leadstream.secretFileSettings" -}}
{{- $dir := include "leadstream.secretsDir" . }}
{{- range $key, $env := include "leadstream.roleSecrets" . | fromYaml }}
{{- if $env }}
{{- include "leadstream.setting" (list $env (printf "%s/%s" $dir $key)) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "leadstream.rulesSettings" -}}
{{- if include "leadstream.hasRules" . }}
{{- include "leadstream.setting" (list "LEADSTREAM_RULES" (printf "%s/%s" (include "leadstream.rulesDir" .) .Values.rules.key)) }}
{{- end }}
{{- end }}

{{/*
The ConfigMap data of a role, every setting it is given: (dict "root" $ "role" "collector").
*/}}
{{- define "leadstream.roleSettings" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- include "leadstream.logSettings" $root }}
{{- include "leadstream.kafkaSettings" $root }}
{{- include "leadstream.secretFileSettings" . }}
{{- if eq .role "collector" }}
{{- $c := $v.collector }}
{{- include "leadstream.setting" (list "LEADSTREAM_HTTP_ADDR" (printf ":%d" (int64 $c.port))) }}
{{- include "leadstream.setting" (list "LEADSTREAM_PUBLIC_URL" $c.publicURL) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_COOKIE_DOMAIN" $c.cookieDomain) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_CORS_ORIGINS" $c.corsOrigins) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_TRUSTED_PROXIES" (join "," $c.trustedProxies)) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_TRUST_FORWARDED" $c.trustForwarded) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_PRODUCE_TIMEOUT" $c.produceTimeout) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_IDLE_TIMEOUT" $c.idleTimeout) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_MAX_CONNS_PER_IP" $c.maxConnsPerIP) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_RATE_LIMIT_IP" $c.rateLimitIP) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_RATE_LIMIT_KEY" $c.rateLimitKey) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_MAX_EVENT_AGE" $c.maxEventAge) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_IP_ANONYMIZE" $c.ipAnonymize) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_MAX_QUEUE_BYTES" $c.maxQueueBytes) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_GOGC" $c.gogc) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_SCANNER_MIN_DELAY" $c.scannerMinDelay) }}
{{- include "leadstream.setting" (list "LEADSTREAM_COLLECTOR_SCANNER_BURST" $c.scannerBurst) }}
{{- include "leadstream.rulesSettings" $root }}
{{- if $c.redis.enabled }}
{{- include "leadstream.redisSettings" (dict "root" $root "username" (default $v.redis.username $c.redis.username)) }}
{{- end }}
{{- include "leadstream.clickhouseSettings" $root }}
{{- else if eq .role "processor" }}
{{- $p := $v.processor }}
{{- include "leadstream.setting" (list "LEADSTREAM_HTTP_ADDR" (printf ":%d" (int64 $p.port))) }}
{{- include "leadstream.setting" (list "LEADSTREAM_PROCESSOR_GROUP" $p.group) }}
{{- include "leadstream.setting" (list "LEADSTREAM_PROCESSOR_BATCH_SIZE" $p.batchSize) }}
{{- include "leadstream.setting" (list "LEADSTREAM_PROCESSOR_MAX_WAIT" $p.maxWait) }}
{{- include "leadstream.setting" (list "LEADSTREAM_PROCESSOR_DEDUP_WINDOW" $p.dedupWindow) }}
{{- include "leadstream.setting" (list "LEADSTREAM_PROCESSOR_ANONYMOUS_TTL" $p.anonymousTTL) }}
{{- include "leadstream.setting" (list "LEADSTREAM_PROCESSOR_STATE_CACHE" $p.stateCache) }}
{{- include "leadstream.rulesSettings" $root }}
{{- include "leadstream.redisSettings" (dict "root" $root "username" $v.redis.username) }}
{{- include "leadstream.setting" (list "LEADSTREAM_ACCOUNTS_FROM_EMAIL_DOMAIN" $v.accounts.fromEmailDomain) }}
{{- else if eq .role "sink" }}
{{- $s := $v.sink }}
{{- include "leadstream.setting" (list "LEADSTREAM_HTTP_ADDR" (printf ":%d" (int64 $s.port))) }}
{{- include "leadstream.setting" (list "LEADSTREAM_SINK_GROUP" $s.group) }}
{{- include "leadstream.setting" (list "LEADSTREAM_SINK_BATCH_SIZE" $s.batchSize) }}
{{- include "leadstream.setting" (list "LEADSTREAM_SINK_FLUSH_INTERVAL" $s.flushInterval) }}
{{- include "leadstream.clickhouseSettings" $root }}
{{- include "leadstream.setting" (list "LEADSTREAM_ACCOUNTS_FROM_EMAIL_DOMAIN" $v.accounts.fromEmailDomain) }}
{{- else if eq .role "notifier" }}
{{- $n := $v.notifier }}
{{- include "leadstream.setting" (list "LEADSTREAM_HTTP_ADDR" (printf ":%d" (int64 $n.port))) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_CONFIG" (printf "%s/%s" (include "leadstream.notifyDir" $root) $n.config.key)) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_GROUP_PREFIX" $n.groupPrefix) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_MAX_AGE" $n.maxAge) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_RETRY_MIN" $n.retryMin) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_RETRY_MAX" $n.retryMax) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_TIMEOUT" $n.timeout) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_CONCURRENCY" $n.concurrency) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_MAX_PENDING" $n.maxPending) }}
{{- include "leadstream.setting" (list "LEADSTREAM_NOTIFY_TOPIC_CHECK" $n.topicCheck) }}
{{- include "leadstream.clickhouseSettings" $root }}
{{- end }}
{{- end }}

{{/*
The ConfigMap data of a role as YAML: its settings (leadstream.roleSettings)
and its extraSettings, for flags the chart has no value for. An extra setting
may neither replace one the chart sets nor carry a secret: (dict "root" $ "role" "collector").
*/}}
{{- define "leadstream.roleConfig" -}}
{{- $role := .role }}
{{- $data := include "leadstream.roleSettings" . | fromYaml }}
{{- $secretFiles := values (include "leadstream.secretKeyEnv" .root | fromYaml) }}
{{- range $k, $v := (get .root.Values $role).extraSettings }}
{{- if or (has $k $secretFiles) (has (printf "%s_FILE" $k) $secretFiles) }}
{{- fail (printf "%s.extraSettings.%s: a secret; give it in secrets (it is mounted as a file), never as a setting" $role $k) }}
{{- end }}
{{- if hasKey $data $k }}
{{- fail (printf "%s.extraSettings.%s: the chart sets %s from its own value (values.yaml); set that instead" $role $k $k) }}
{{- end }}
{{- range $k2, $v2 := include "leadstream.setting" (list $k $v) | fromYaml }}
{{- $_ := set $data $k2 $v2 }}
{{- end }}
{{- end }}
{{- if $data }}
{{- toYaml $data }}
{{- end }}
{{- end }}

{{/*
Checks of the values a render cannot do without, with messages naming the value.
*/}}
{{- define "leadstream.validate" -}}
{{- $v := .Values }}
{{- if not $v.kafka.brokers }}
{{- fail "kafka.brokers is required: the Kafka bootstrap brokers, host:port,…" }}
{{- end }}
{{- if not $v.redis.addr }}
{{- fail "redis.addr is required: the processor keeps the scores in Redis (host:port)" }}
{{- end }}
{{- if not $v.clickhouse.addr }}
{{- fail "clickhouse.addr is required: the sink writes the events to ClickHouse (host:port, native protocol)" }}
{{- end }}
{{- $have := include "leadstream.secretKeys" . | fromJsonArray }}
{{- if not (has "write-keys" $have) }}
{{- if $v.secrets.existingSecret }}
{{- fail (printf "secrets.existingSecretKeys must list write-keys: the collector needs write keys, from the Secret %q" $v.secrets.existingSecret) }}
{{- else }}
{{- fail "secrets.writeKeys (or secrets.existingSecret) is required: the collector needs at least one write key" }}
{{- end }}
{{- end }}
{{- if and $v.kafka.sasl.mechanism (not (and $v.kafka.sasl.username (has "kafka-sasl-password" $have))) }}
{{- fail "kafka.sasl.mechanism is set: kafka.sasl.username and the kafka-sasl-password secret (secrets.kafkaSaslPassword or existingSecretKeys) are required" }}
{{- end }}
{{- if and (not $v.kafka.sasl.mechanism) (or $v.kafka.sasl.username (has "kafka-sasl-password" $have)) }}
{{- fail "kafka.sasl.username or the kafka-sasl-password secret is set but kafka.sasl.mechanism is empty: set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" }}
{{- end }}
{{- $colUser := $v.collector.redis.username }}
{{- if and (has "collector-redis-password" $have) (not $colUser) }}
{{- fail "the collector-redis-password secret is set but collector.redis.username is empty: the collector would log in as redis.username with the collector's password; set both or neither" }}
{{- end }}
{{- if and $colUser (ne $colUser (default "" $v.redis.username)) (not (has "collector-redis-password" $have)) }}
{{- fail "collector.redis.username names the collector's own Redis user but the collector-redis-password secret is not set (secrets.collectorRedisPassword or existingSecretKeys): set both or neither" }}
{{- end }}
{{- range $name := list "kafka" "redis" "clickhouse" }}
{{- $t := get (get $v $name) "tls" }}
{{- if and (not $t.enabled) (or $t.secretName $t.ca $t.cert $t.key $t.serverName) }}
{{- fail (printf "%s.tls: files or a server name are set but %s.tls.enabled is false" $name $name) }}
{{- end }}
{{- if and $t.secretName (not (or $t.ca $t.cert $t.key)) }}
{{- fail (printf "%s.tls.secretName is set: name the keys it holds in %s.tls.ca (CA bundle) and/or %s.tls.cert and %s.tls.key (client certificate)" $name $name $name $name) }}
{{- end }}
{{- if and (or $t.ca $t.cert $t.key) (not $t.secretName) }}
{{- fail (printf "%s.tls.ca, cert and key are keys of %s.tls.secretName, which is empty" $name $name) }}
{{- end }}
{{- if ne (empty $t.cert) (empty $t.key) }}
{{- fail (printf "%s.tls.cert and %s.tls.key go together (mutual TLS): set both or neither" $name $name) }}
{{- end }}
{{- end }}
{{- if and $v.collector.trustForwarded $v.collector.trustedProxies }}
{{- fail "collector.trustForwarded (deprecated: every address is a proxy) and collector.trustedProxies: set trustedProxies only" }}
{{- end }}
{{- if and $v.rules.content $v.rules.existingConfigMap }}
{{- fail "rules.content and rules.existingConfigMap: set one, not both" }}
{{- end }}
{{- if $v.notifier.enabled }}
{{- include "leadstream.validateNotifier" . }}
{{- end }}
{{- end }}

{{/*
Checks of the notifier's destinations file (the notifier checks the rest at
start, naming the line): it is given; its {file: …} secrets are notify-NAME
keys the notifier mounts; and no secret is written into it (it becomes a
ConfigMap, which is not for secrets).
*/}}
{{- define "leadstream.validateNotifier" -}}
{{- $c := .Values.notifier.config }}
{{- if and $c.content $c.existingConfigMap }}
{{- fail "notifier.config.content and notifier.config.existingConfigMap: set one, not both" }}
{{- end }}
{{- if not (or $c.content $c.existingConfigMap) }}
{{- fail "notifier.enabled: notifier.config.content (the destinations file, README \"Notifications\") or notifier.config.existingConfigMap is required" }}
{{- end }}
{{- if $c.content }}
{{- $have := include "leadstream.secretKeys" . | fromJsonArray }}
{{- $dir := include "leadstream.secretsDir" . }}
{{- range regexFindAll (printf "%s/[^\\s\"'}\\],]+" $dir) $c.content -1 }}
{{- $key := trimPrefix (printf "%s/" $dir) . }}
{{- $name := trimPrefix "notify-" $key }}
{{- if not (hasPrefix "notify-" $key) }}
{{- fail (printf "notifier.config.content reads %s: the destinations file reads only notify-NAME keys (%s/notify-NAME, from secrets.notify.NAME)" . $dir) }}
{{- else if not (has $key $have) }}
{{- fail (printf "notifier.config.content reads %s, but there is no secret %s: set secrets.notify.%s (or list %s in secrets.existingSecretKeys)" . $key $name $key) }}
{{- end }}
{{- end }}
{{- $doc := fromYaml $c.content }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "notifier.config.content is not a YAML mapping: %s" (get $doc "Error")) }}
{{- end }}
{{- if kindIs "slice" $doc.destinations }}
{{- range $i, $d := $doc.destinations }}
{{- if kindIs "map" $d }}
{{- $plain := list }}
{{- if kindIs "string" $d.secret }}{{ $plain = append $plain "secret" }}{{ end }}
{{- if and (kindIs "map" $d.smtp) (kindIs "string" (get (default dict $d.smtp) "password")) }}{{ $plain = append $plain "smtp.password" }}{{ end }}
{{- /* A Slack-compatible webhook URL is itself the credential; header values
       named like credentials are too. */}}
{{- if and (eq (toString $d.type) "slack") (kindIs "string" $d.url) }}{{ $plain = append $plain "url" }}{{ end }}
{{- if kindIs "map" $d.headers }}
{{- range $k, $v := $d.headers }}
{{- if and (kindIs "string" $v) (regexMatch "(?i)auth|token|key|secret|password|cookie|signature" $k) }}{{ $plain = append $plain (printf "headers.%s" $k) }}{{ end }}
{{- end }}
{{- end }}
{{- range $plain }}
{{- fail (printf "notifier.config.content: destinations[%d].%s is written into the file, which becomes a ConfigMap: give it as {file: %s/notify-NAME} and its value in secrets.notify.NAME" $i . $dir) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
