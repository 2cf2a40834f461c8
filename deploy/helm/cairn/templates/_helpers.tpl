{{- define "cairn.fullname" -}}
{{- if eq .Release.Name .Chart.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cairn.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "cairn.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The DNS name of member $i: <fullname>-<i>.<fullname>-headless[suffix] */}}
{{- define "cairn.memberHost" -}}
{{- $fn := include "cairn.fullname" .root -}}
{{- printf "%s-%d.%s-headless%s" $fn .i $fn .root.Values.clusterDomainSuffix -}}
{{- end -}}

{{/* cairn.ini of a pod: an initial member's (nodes) or a joiner's (seeds).
     Args: root (the chart's context), joiner (bool). */}}
{{- define "cairn.config" -}}
{{- $root := .root -}}
{{- $joiner := .joiner -}}
{{- $fn := include "cairn.fullname" $root -}}
{{- $replicas := int $root.Values.replicas -}}
{{- $founders := int $root.Values.initialMembers }}
    ; Rendered by the Helm chart: every pod reads this file, then its own
    ; flags (node-name, cluster.host) from the StatefulSet.
    [cairn]
    partitions = {{ int $root.Values.partitions }}
    tiers = {{ toJson $root.Values.tiers }}

    [cairn.tcp]
    host = "0.0.0.0"
    port = {{ int $root.Values.ports.tcp }}

    [cairn.auth]
    algorithm = {{ $root.Values.jwt.algorithm | quote }}
    {{- if eq $root.Values.jwt.algorithm "HS256" }}
    secret-file = "/etc/cairn/jwt/secret"
    {{- else }}
    public-key-file = "/etc/cairn/jwt/public.pem"
    {{- end }}

    [cairn.http]
    port = {{ int $root.Values.ports.http }}
    web-root = "/usr/share/cairn/web"

    [cairn.cluster]
    port = {{ int $root.Values.ports.cluster }}
    {{- if gt $replicas 1 }}
    {{- if $joiner }}
    ; Not one of the initialMembers: joins through them (docs/cluster.md,
    ; "Joining through seeds"); after the join it starts from its stored map.
    seeds = [{{ range $i := until $founders }}{{ if $i }}, {{ end }}"{{ include "cairn.memberHost" (dict "root" $root "i" $i) }}:{{ int $root.Values.ports.cluster }}"{{ end }}]
    {{- else }}
    nodes = [{{ range $i := until $founders }}{{ if $i }}, {{ end }}"{{ $fn }}-{{ $i }}@{{ include "cairn.memberHost" (dict "root" $root "i" $i) }}:{{ int $root.Values.ports.cluster }}"{{ end }}]
    {{- end }}
    tls-certificate = "/etc/cairn/tls/tls.crt"
    tls-key = "/etc/cairn/tls/tls.key"
    tls-ca-file = "/etc/cairn/tls/ca.crt"
    {{- end }}

    [cairn.storage]
    path = "/var/lib/cairn/data"
    sync = {{ $root.Values.storage.sync | quote }}

    [cairn.log]
    level = {{ $root.Values.logLevel | quote }}
{{- end -}}
