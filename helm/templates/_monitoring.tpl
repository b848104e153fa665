{{/* Prometheus scraping (monitoring.*). TF Serving serves its own metrics on the REST port at
fmtune.servingMetricsPath once --monitoring_config_file turns them on; the coordinator serves its
metrics at /metrics on the dashboard's HTTP port. */}}
{{- define "fmtune.servingMetricsPath" -}}/monitoring/prometheus/metrics{{- end -}}
{{- define "fmtune.coordinatorMetricsPath" -}}/metrics{{- end -}}

{{/* TF Serving's MonitoringConfig, in protobuf text format. */}}
{{- define "fmtune.servingMonitoringConfig" -}}
prometheus_config {
  enable: true
  path: {{ include "fmtune.servingMetricsPath" . | quote }}
}
{{- end -}}

{{/* "true" when a scraper can reach the coordinator's metrics: they share the dashboard's port, so
the dashboard must be on and listen on the pod's addresses (on loopback only kubectl port-forward
reaches it, and a scrape would only ever fail). */}}
{{- define "fmtune.coordinatorScraped" -}}
{{- if and .Values.monitoring.enabled .Values.dashboard.enabled (not (has .Values.dashboard.host (list "127.0.0.1" "::1"))) }}true{{ end -}}
{{- end -}}

{{/* The conventional prometheus.io/* annotations a pod-discovery scrape job keeps pods by. */}}
{{- define "fmtune.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path | quote }}
{{- end -}}

{{- define "fmtune.coordinatorScrapeAnnotations" -}}
{{- if include "fmtune.coordinatorScraped" . -}}
{{- include "fmtune.scrapeAnnotations" (dict "port" .Values.dashboard.port "path" (include "fmtune.coordinatorMetricsPath" .)) -}}
{{- end -}}
{{- end -}}

{{/* Monitoring values that cannot do what they ask, refused before anything is rendered. */}}
{{- define "fmtune.checkMonitoringValues" -}}
{{- $m := .Values.monitoring -}}
{{- if and (not $m.enabled) $m.serviceMonitor.enabled -}}
{{- fail "monitoring.serviceMonitor.enabled needs monitoring.enabled: without it TF Serving serves no metrics and the coordinator's are not announced" -}}
{{- end -}}
{{- if $m.scrapeFrom -}}
{{- if not $m.enabled -}}
{{- fail "monitoring.scrapeFrom is set but monitoring.enabled is false: set monitoring.enabled=true, or drop scrapeFrom" -}}
{{- end -}}
{{- if not .Values.dashboard.enabled -}}
{{- fail "monitoring.scrapeFrom admits scrapers to the coordinator's metrics, which it serves on the dashboard's port, but dashboard.enabled is false: set dashboard.enabled=true" -}}
{{- end -}}
{{- if not (include "fmtune.coordinatorScraped" .) -}}
{{- fail (printf "monitoring.scrapeFrom admits scrapers over the network, but dashboard.host is %s (loopback), where the coordinator serves its metrics and only kubectl port-forward reaches: set dashboard.host=0.0.0.0 as well" .Values.dashboard.host) -}}
{{- end -}}
{{- end -}}
{{- end -}}
