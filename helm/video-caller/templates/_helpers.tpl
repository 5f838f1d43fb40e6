{{/*
Names, labels and the derived settings shared by the templates.
*/}}

{{/* Chart name, overridable. */}}
{{- define "video-caller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: "<release>-<chart>" unless the release name already contains the
chart name. Truncated to 63 characters (DNS label); "-redis" and the like are
appended within that limit by video-caller.componentName.
*/}}
{{- define "video-caller.fullname" -}}
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

{{/* "<fullname>-<suffix>" within 63 characters. Call with (list $ "suffix"). */}}
{{- define "video-caller.componentName" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "video-caller.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

{{/* Chart label value. */}}
{{- define "video-caller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object (Kubernetes recommended labels). Call with
(dict "ctx" $ "component" "signaling").
*/}}
{{- define "video-caller.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "video-caller.chart" $ctx }}
{{ include "video-caller.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Values.image.tag | default $ctx.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: video-caller
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels. Call with (dict "ctx" $ "component" "signaling"). */}}
{{- define "video-caller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "video-caller.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* ServiceAccount of the nodes. */}}
{{- define "video-caller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "video-caller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference of the node: digest wins over tag, tag defaults to appVersion. */}}
{{- define "video-caller.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Where the Redis URL comes from: "secret" (redis.existingSecret), "url" (the
chart's Secret), "internal" (the in-chart Redis) or "" (in-process bus).
*/}}
{{- define "video-caller.redisSource" -}}
{{- if .Values.redis.existingSecret }}secret
{{- else if .Values.redis.url }}url
{{- else if .Values.redis.internal.enabled }}internal
{{- end }}
{{- end }}

{{/* URL of the in-chart Redis. */}}
{{- define "video-caller.internalRedisUrl" -}}
{{- printf "redis://%s:%d/0" (include "video-caller.componentName" (list . "redis")) (int .Values.redis.internal.port) }}
{{- end }}

{{/* "true" when the node needs the JWT secret. */}}
{{- define "video-caller.needsJwtSecret" -}}
{{- if eq (toString (dig "auth" "mode" "none" (.Values.settings | default dict))) "jwt" }}true{{ end }}
{{- end }}

{{/* "true" when the node needs the TURN secret: TURN URLs of its own, or the in-chart coturn. */}}
{{- define "video-caller.needsTurnSecret" -}}
{{- if or .Values.coturn.enabled (dig "ice" "turn_urls" list (.Values.settings | default dict)) }}true{{ end }}
{{- end }}

{{/*
coturn's command line (a YAML list): TURN REST credentials with the shared
secret in $(TURN_SECRET), no TLS (browsers' media is DTLS-SRTP already), no
relaying to the cluster's or the host's own networks.
*/}}
{{- define "video-caller.coturnArgs" -}}
{{- $c := .Values.coturn -}}
- "-n"
- "--log-file=stdout"
- "--simple-log"
- "--no-cli"
- "--no-tls"
- "--no-dtls"
- "--fingerprint"
- "--use-auth-secret"
- "--static-auth-secret=$(TURN_SECRET)"
- {{ printf "--realm=%s" $c.realm | quote }}
- {{ printf "--listening-port=%d" (int $c.port) | quote }}
- {{ printf "--min-port=%d" (int $c.relayPortMin) | quote }}
- {{ printf "--max-port=%d" (int $c.relayPortMax) | quote }}
{{- with $c.externalIP }}
- {{ printf "--external-ip=%s" . | quote }}
{{- end }}
- "--no-multicast-peers"
{{- range $c.deniedPeerIPs }}
- {{ printf "--denied-peer-ip=%s" . | quote }}
{{- end }}
- "--no-software-attribute"
- "--pidfile=/tmp/turnserver.pid"
- "--db=/tmp/turndb"
{{- end }}

{{/* The URLs browsers are handed for the in-chart coturn. */}}
{{- define "video-caller.coturnStunUrls" -}}
{{- printf "stun:%s:%d" .Values.coturn.publicHost (int .Values.coturn.port) }}
{{- end }}
{{- define "video-caller.coturnTurnUrls" -}}
{{- $host := printf "%s:%d" .Values.coturn.publicHost (int .Values.coturn.port) }}
{{- printf "turn:%s?transport=udp,turn:%s?transport=tcp" $host $host }}
{{- end }}

{{/* "true" when the nodes serve HTTPS themselves (a mounted Secret or a self-signed certificate). */}}
{{- define "video-caller.nodeTls" -}}
{{- if or .Values.tls.secretName (dig "tls" "self_signed" false (.Values.settings | default dict)) }}true{{ end }}
{{- end }}

{{/* Where the node pods mount tls.secretName. */}}
{{- define "video-caller.tlsMountPath" -}}/etc/video-caller/tls{{- end }}

{{/* Name of the Secret holding the JWT/TURN secrets. */}}
{{- define "video-caller.secretName" -}}
{{- default (include "video-caller.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* "true" when the chart creates its own Secret. */}}
{{- define "video-caller.createSecret" -}}
{{- $jwt := and (include "video-caller.needsJwtSecret" .) (not .Values.secrets.existingSecret) }}
{{- $turn := and (include "video-caller.needsTurnSecret" .) (not .Values.secrets.existingSecret) }}
{{- $redis := eq (include "video-caller.redisSource" .) "url" }}
{{- if or $jwt $turn $redis }}true{{ end }}
{{- end }}

{{/*
Seconds of a duration value "<n>ms|s|m|h" (values.schema.json allows only
these), rounded up. Call with (list $value $defaultSeconds).
*/}}
{{- define "video-caller.durationSeconds" -}}
{{- $value := index . 0 }}
{{- $default := index . 1 }}
{{- if kindIs "invalid" $value }}
{{- $default }}
{{- else }}
{{- $s := toString $value | trim }}
{{- $n := regexFind "^[0-9]+" $s | int }}
{{- $unit := regexReplaceAll "^[0-9]+" $s "" }}
{{- if eq $unit "ms" }}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" }}{{ $n }}
{{- else if eq $unit "m" }}{{ mul $n 60 }}
{{- else if eq $unit "h" }}{{ mul $n 3600 }}
{{- else }}{{ fail (printf "duration %q: use <number>ms, s, m or h" $s) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: preStop sleep + drain.timeout +
server.shutdown_timeout + margin (the node's own defaults, 30s and 5s, when the
settings are left out). An explicit value must be at least the drain's need.
*/}}
{{- define "video-caller.terminationGracePeriodSeconds" -}}
{{- $settings := .Values.settings | default dict }}
{{- $drain := include "video-caller.durationSeconds" (list (dig "drain" "timeout" nil $settings) 30) | int }}
{{- $shutdown := include "video-caller.durationSeconds" (list (dig "server" "shutdown_timeout" nil $settings) 5) | int }}
{{- $need := add (int .Values.lifecycle.preStopSleepSeconds) $drain $shutdown }}
{{- $explicit := .Values.lifecycle.terminationGracePeriodSeconds }}
{{- if not (kindIs "invalid" $explicit) }}
{{- if lt (int $explicit) (int $need) }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds=%d is shorter than preStop sleep + drain.timeout + server.shutdown_timeout = %ds: pods would be killed while draining" (int $explicit) (int $need)) }}
{{- end }}
{{- int $explicit }}
{{- else }}
{{- add $need (int .Values.lifecycle.terminationGraceMarginSeconds) }}
{{- end }}
{{- end }}

{{/* One setting value as an environment string: lists comma-joined, whole numbers without exponent. */}}
{{- define "video-caller.envValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if kindIs "float64" . }}
{{- if eq . (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
The node's environment from .Values.settings, as "VC_<SECTION>__<KEY>: value"
lines (sorted), plus what the chart itself sets.
*/}}
{{/* https://<host> of every public host name (Ingress, HTTPRoute), comma-separated. */}}
{{- define "video-caller.derivedOrigins" -}}
{{- $origins := list }}
{{- if .Values.ingress.enabled }}
{{- range .Values.ingress.hosts }}{{ if .host }}{{ $origins = append $origins (printf "https://%s" .host) }}{{ end }}{{ end }}
{{- end }}
{{- if .Values.httpRoute.enabled }}
{{- range .Values.httpRoute.hostnames }}{{ $origins = append $origins (printf "https://%s" .) }}{{ end }}
{{- end }}
{{- join "," ($origins | uniq) }}
{{- end }}

{{- define "video-caller.settingsEnv" -}}
VC_SERVER__HOST: "0.0.0.0"
VC_SERVER__PORT: {{ .Values.containerPort | int | toString | quote }}
VC_SERVER__METRICS_ADDRESS: {{ printf "0.0.0.0:%d" (.Values.metricsPort | int) | quote }}
{{- $origins := include "video-caller.derivedOrigins" . }}
{{- if and $origins (empty (dig "server" "allowed_origins" list (.Values.settings | default dict))) }}
VC_SERVER__ALLOWED_ORIGINS: {{ $origins | quote }}
{{- end }}
{{- range $section, $keys := (.Values.settings | default dict) }}
{{- range $key, $value := ($keys | default dict) }}
{{- /* null keeps the node default; so does an empty list (the node's default is empty) */}}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "slice" $value) (empty $value))) }}
{{ printf "VC_%s__%s" (upper $section) (upper $key) }}: {{ include "video-caller.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq (include "video-caller.redisSource" .) "internal" }}
VC_REDIS__URL: {{ include "video-caller.internalRedisUrl" . | quote }}
{{- end }}
{{- if .Values.coturn.enabled }}
{{- $ice := dig "ice" dict (.Values.settings | default dict) }}
{{- if empty (get $ice "stun_urls") }}
VC_ICE__STUN_URLS: {{ include "video-caller.coturnStunUrls" . | quote }}
{{- end }}
{{- if empty (get $ice "turn_urls") }}
VC_ICE__TURN_URLS: {{ include "video-caller.coturnTurnUrls" . | quote }}
{{- end }}
{{- end }}
{{- if .Values.tls.secretName }}
VC_TLS__CERT_FILE: {{ printf "%s/tls.crt" (include "video-caller.tlsMountPath" .) | quote }}
VC_TLS__KEY_FILE: {{ printf "%s/tls.key" (include "video-caller.tlsMountPath" .) | quote }}
{{- end }}
{{- end }}

{{/* Replicas the fleet may reach: replicaCount, or the HPA's maximum. */}}
{{- define "video-caller.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas | int }}{{ else }}{{ .Values.replicaCount | int }}{{ end }}
{{- end }}

{{/* Refuses combinations that would deploy a broken fleet. */}}
{{- define "video-caller.validate" -}}
{{- $settings := .Values.settings | default dict }}
{{- $sources := 0 }}
{{- if .Values.redis.existingSecret }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.redis.url }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.redis.internal.enabled }}{{ $sources = add1 $sources }}{{ end }}
{{- if gt $sources 1 }}
{{- fail "redis: set only one of redis.url, redis.existingSecret and redis.internal.enabled" }}
{{- end }}
{{- if eq (int .Values.metricsPort) (int .Values.containerPort) }}
{{- fail "metricsPort must differ from containerPort: /metrics has a listener of its own" }}
{{- end }}
{{- if and (gt (include "video-caller.maxReplicas" . | int) 1) (not (include "video-caller.redisSource" .)) }}
{{- fail "more than one node (replicaCount > 1 or autoscaling.enabled) needs Redis: without it each node is a separate island and peers in the same room would not see each other. Set redis.url, redis.existingSecret or redis.internal.enabled" }}
{{- end }}
{{- if and (include "video-caller.needsJwtSecret" .) (not .Values.secrets.existingSecret) }}
{{- if lt (len .Values.secrets.jwtSecret) 32 }}
{{- fail "settings.auth.mode is \"jwt\": set secrets.jwtSecret (at least 32 bytes) or secrets.existingSecret" }}
{{- end }}
{{- end }}
{{- if .Values.coturn.enabled }}
{{- if not .Values.coturn.publicHost }}
{{- fail "coturn.enabled needs coturn.publicHost: the host name or IP address browsers reach coturn at" }}
{{- end }}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.turnSecret) }}
{{- fail "coturn.enabled needs the secret coturn and the nodes share: set secrets.turnSecret or secrets.existingSecret" }}
{{- end }}
{{- if gt (int .Values.coturn.relayPortMin) (int .Values.coturn.relayPortMax) }}
{{- fail "coturn.relayPortMin must not exceed coturn.relayPortMax" }}
{{- end }}
{{- if and (not .Values.coturn.hostNetwork) (gt (sub (int .Values.coturn.relayPortMax) (int .Values.coturn.relayPortMin)) 199) }}
{{- fail "coturn.hostNetwork=false forwards every relay port through the Service one by one: keep relayPortMax - relayPortMin under 200" }}
{{- end }}
{{- end }}
{{- if and (include "video-caller.needsTurnSecret" .) (not .Values.secrets.existingSecret) (not .Values.secrets.turnSecret) }}
{{- fail "settings.ice.turn_urls is set: set secrets.turnSecret or secrets.existingSecret" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (kindIs "invalid" .Values.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" .Values.autoscaling.targetMemoryUtilizationPercentage) (not .Values.autoscaling.sessionsPerPod.enabled) }}
{{- fail "autoscaling.enabled needs at least one metric: targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage or sessionsPerPod" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable) (kindIs "invalid" .Values.podDisruptionBudget.minAvailable) }}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable" }}
{{- end }}
{{- if and .Values.tls.secretName (dig "tls" "self_signed" false $settings) }}
{{- fail "tls.secretName and settings.tls.self_signed both give the nodes a certificate: choose one" }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs (the Gateway to attach to)" }}
{{- end }}
{{- end }}
