{{/* Labels every object carries; "component" tells the parts apart (NetworkPolicies select on it). */}}
{{- define "fleetdns.labels" -}}
app.kubernetes.io/name: fleetdns
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "fleetdns.selector" -}}
app.kubernetes.io/name: fleetdns
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "fleetdns.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Every container: non-root, read-only root filesystem, no privilege escalation, no capabilities. */}}
{{- define "fleetdns.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities: {drop: ["ALL"]}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "fleetdns.podSpecCommon" -}}
securityContext:
  runAsNonRoot: true
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
  seccompProfile: {type: RuntimeDefault}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* /healthz (liveness) and /readyz (readiness) on a FleetDNS process's health port. */}}
{{- define "fleetdns.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: health}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: health}
  periodSeconds: 2
{{- end }}

{{- define "fleetdns.etcdName" -}}fleetdns-etcd{{- end }}

{{/* etcd client URLs, comma-separated: region.etcd.external.endpoints, else every member of the chart's etcd. */}}
{{- define "fleetdns.etcdURLs" -}}
{{- if .Values.region.etcd.external.endpoints -}}
{{- join "," .Values.region.etcd.external.endpoints -}}
{{- else -}}
{{- $scheme := ternary "https" "http" .Values.region.etcd.tls.enabled -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.region.etcd.replicas) -}}
{{- $urls = append $urls (printf "%s://fleetdns-etcd-%d.fleetdns-etcd.%s.svc:2379" $scheme $i $.Release.Namespace) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
{{- end }}

{{/* HOST:PORT on listenAddress (an IPv6 address in brackets): what health and metrics ports bind. */}}
{{- define "fleetdns.listen" -}}
{{- $host := .root.Values.listenAddress -}}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end -}}
{{- printf "%s:%v" $host .port -}}
{{- end }}

{{/* A FleetDNS container's extraArgs (after the chart's own: a repeated flag's last value wins). */}}
{{- define "fleetdns.extraArgs" -}}
{{- range . }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The etcd client's TLS files (fleetdns/skydns/settings.py reads ETCD_CA_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE). */}}
{{- define "fleetdns.etcdClientEnv" -}}
{{- if .Values.region.etcd.tls.enabled }}
- {name: ETCD_CA_FILE, value: /etc/fleetdns/etcd/ca.crt}
- {name: ETCD_CERT_FILE, value: /etc/fleetdns/etcd/tls.crt}
- {name: ETCD_KEY_FILE, value: /etc/fleetdns/etcd/tls.key}
{{- end }}
{{- end }}

{{- define "fleetdns.etcdClientMount" -}}
{{- if .Values.region.etcd.tls.enabled }}
- {name: etcd-client-tls, mountPath: /etc/fleetdns/etcd, readOnly: true}
{{- end }}
{{- end }}

{{- define "fleetdns.etcdClientVolume" -}}
{{- if .Values.region.etcd.tls.enabled }}
- name: etcd-client-tls
  secret: {secretName: {{ .Values.region.etcd.tls.clientSecret }}}
{{- end }}
{{- end }}

{{- define "fleetdns.logArgs" -}}
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
{{- end }}

{{/* NetworkPolicy ingress peers allowed to reach health and metrics ports. */}}
{{- define "fleetdns.metricsFrom" -}}
{{- with .Values.networkPolicy.metricsFrom }}
from:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
