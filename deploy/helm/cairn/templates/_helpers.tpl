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
