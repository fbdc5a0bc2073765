{{/* Labels of every object: those of manifests/base (name, component, part-of) plus Helm's own. */}}
{{- define "dbops.labels" -}}
app.kubernetes.io/name: dbops
app.kubernetes.io/part-of: dbops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The operator's pods, exactly as manifests/base selects them (never changed by an upgrade). */}}
{{- define "dbops.selector" -}}
app.kubernetes.io/name: dbops
app.kubernetes.io/component: operator
{{- end }}

{{- define "dbops.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{- define "dbops.clusterScope" -}}
{{- if eq .Values.watch.scope "cluster" }}true{{ end }}
{{- end }}

{{/* The webhook runs only cluster-wide: its configurations are cluster-scoped objects. */}}
{{- define "dbops.webhook" -}}
{{- if and .Values.webhook.enabled (eq .Values.watch.scope "cluster") }}true{{ end }}
{{- end }}

{{- define "dbops.subject" -}}
- kind: ServiceAccount
  name: {{ .Values.serviceAccount.name }}
  namespace: {{ .Release.Namespace }}
{{- end }}
