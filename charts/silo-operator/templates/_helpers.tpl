{{- define "silo-operator.labels" -}}
app.kubernetes.io/name: silo-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: silo
{{- end }}

{{- define "silo-operator.selector" -}}
app.kubernetes.io/name: silo-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
