{{/*
The Deployment of one role: (dict "root" $ "role" "collector"). The roles
differ in their settings (ConfigMap), the secrets and files they mount (the
rules; the notifier's destinations file), their port, and for the collector
the autoscaler and the preStop sleep.
*/}}
{{- define "leadstream.deployment" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $v := $root.Values }}
{{- $cfg := get $v $role }}
{{- $ctx := dict "root" $root "role" $role }}
{{- $secrets := include "leadstream.roleSecrets" $ctx | fromYaml }}
{{- $rules := and (has $role (list "collector" "processor")) (include "leadstream.hasRules" $root) }}
{{- $rulesContent := "" }}
{{- if and $rules $v.rules.content }}{{ $rulesContent = $v.rules.content }}{{ end }}
{{- $notify := eq $role "notifier" }}
{{- if $notify }}{{ $rulesContent = $v.notifier.config.content }}{{ end }}
{{- $usesRedis := or (eq $role "processor") (and (eq $role "collector") $v.collector.redis.enabled) }}
{{- $tls := list }}
{{- if and $v.kafka.tls.enabled $v.kafka.tls.secretName }}{{ $tls = append $tls (dict "name" "kafka" "t" $v.kafka.tls) }}{{ end }}
{{- if and $usesRedis $v.redis.tls.enabled $v.redis.tls.secretName }}{{ $tls = append $tls (dict "name" "redis" "t" $v.redis.tls) }}{{ end }}
{{- if and (has $role (list "sink" "collector" "notifier")) $v.clickhouse.tls.enabled $v.clickhouse.tls.secretName }}{{ $tls = append $tls (dict "name" "clickhouse" "t" $v.clickhouse.tls) }}{{ end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "leadstream.fullname" $root }}-{{ $role }}
  labels:
    {{- include "leadstream.roleLabels" $ctx | nindent 4 }}
spec:
  {{- if not (and (eq $role "collector") $v.collector.autoscaling.enabled) }}
  replicas: {{ $cfg.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "leadstream.selectorLabels" $ctx | nindent 6 }}
  {{- if eq $role "collector" }}
  strategy:
    # Never fewer collectors than wanted while rolling.
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 25%}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "leadstream.roleLabels" $ctx | nindent 8 }}
        {{- with $cfg.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # The roles read their settings, rules, destinations and secrets at start: a change rolls the pods.
        checksum/config: {{ printf "%s\n%s" (include "leadstream.roleConfig" $ctx) $rulesContent | sha256sum }}
        {{- if not $v.secrets.existingSecret }}
        checksum/secret: {{ include "leadstream.secretValues" $root | sha256sum }}
        {{- end }}
        {{- with $cfg.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "leadstream.serviceAccountName" $root }}
      automountServiceAccountToken: false
      # Service links would add variables named after the Services, some with
      # the LEADSTREAM_ prefix the roles read their settings from.
      enableServiceLinks: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $cfg.terminationGracePeriodSeconds }}
      {{- with $cfg.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      containers:
        - name: {{ $role }}
          image: "{{ $v.image.repository }}:{{ include "leadstream.imageTag" $root }}"
          imagePullPolicy: {{ $v.image.pullPolicy }}
          # The image's entrypoint is the leadstream binary.
          args: [{{ $role }}]
          ports:
            - name: http
              containerPort: {{ $cfg.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "leadstream.fullname" $root }}-{{ $role }}
          {{- with $cfg.extraEnv }}
          env:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          # /healthz answers while the process runs; /readyz only while its
          # services answer (Kafka; and Redis for the processor, ClickHouse for
          # the sink; the notifier also while its consumers run), each check
          # bounded by 2 s. A role that loses a service keeps running and
          # retrying: it turns unready, it is not restarted.
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
            timeoutSeconds: 3
            failureThreshold: 60
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          {{- if and (eq $role "collector") (gt (int64 $v.collector.preStopSleepSeconds) 0) (semverCompare ">=1.30-0" $root.Capabilities.KubeVersion.Version) }}
          lifecycle:
            # Keep serving until the endpoints no longer list this pod; the
            # image has no shell, so this is the kubelet's sleep action.
            preStop:
              sleep: {seconds: {{ $v.collector.preStopSleepSeconds }}}
          {{- end }}
          resources:
            {{- toYaml $cfg.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          {{- if or $secrets $rules $notify $tls $cfg.extraVolumeMounts }}
          volumeMounts:
            {{- if $secrets }}
            - name: secrets
              mountPath: {{ include "leadstream.secretsDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $rules }}
            - name: rules
              mountPath: {{ include "leadstream.rulesDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $notify }}
            - name: destinations
              mountPath: {{ include "leadstream.notifyDir" $root }}
              readOnly: true
            {{- end }}
            {{- range $tls }}
            - name: {{ .name }}-tls
              mountPath: {{ include "leadstream.tlsDir" .name }}
              readOnly: true
            {{- end }}
            {{- with $cfg.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
      {{- if or $secrets $rules $notify $tls $cfg.extraVolumes }}
      volumes:
        {{- if $secrets }}
        - name: secrets
          secret:
            secretName: {{ include "leadstream.secretName" $root }}
            # Read by the group (fsGroup) the non-root user runs in.
            defaultMode: 0440
            items:
              {{- range $key, $_ := $secrets }}
              - {key: {{ $key }}, path: {{ $key }}}
              {{- end }}
        {{- end }}
        {{- if $rules }}
        - name: rules
          configMap:
            name: {{ include "leadstream.rulesConfigMap" $root }}
            items:
              - {key: {{ $v.rules.key | quote }}, path: {{ $v.rules.key | quote }}}
        {{- end }}
        {{- if $notify }}
        - name: destinations
          configMap:
            name: {{ include "leadstream.notifyConfigMap" $root }}
            items:
              - {key: {{ $v.notifier.config.key | quote }}, path: {{ $v.notifier.config.key | quote }}}
        {{- end }}
        {{- range $tls }}
        - name: {{ .name }}-tls
          secret:
            secretName: {{ .t.secretName }}
            defaultMode: 0440
            items:
              {{- range $f := list .t.ca .t.cert .t.key }}
              {{- if $f }}
              - {key: {{ $f | quote }}, path: {{ $f | quote }}}
              {{- end }}
              {{- end }}
        {{- end }}
        {{- with $cfg.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with $cfg.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $cfg.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $cfg.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $cfg.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
