{{- define "fmtune.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fmtune.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: coordinator, worker, serving. */}}
{{- define "fmtune.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fmtune.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "fmtune.claimName" -}}
{{- .Values.storage.existingClaim | default (printf "%s-data" (include "fmtune.fullname" .)) -}}
{{- end -}}

{{- define "fmtune.oracleHost" -}}
{{- printf "%s-oracle" (include "fmtune.fullname" .) -}}
{{- end -}}

{{- define "fmtune.servingName" -}}
{{- printf "%s-serving" (include "fmtune.fullname" .) -}}
{{- end -}}

{{- define "fmtune.recordName" -}}
{{- printf "%s-deployments" (include "fmtune.fullname" .) -}}
{{- end -}}

{{/* Jobs are immutable: a new revision gets new Job names (the search resumes from the volume). */}}
{{- define "fmtune.jobSuffix" -}}
{{- printf "r%d" (int .Release.Revision) -}}
{{- end -}}

{{/* The revision label on the Jobs' pods: the oracle Service selects only this revision's
coordinator, so new workers never reach an old coordinator that is still shutting down. */}}
{{- define "fmtune.revisionLabel" -}}
fmtune.io/revision: {{ include "fmtune.jobSuffix" . }}
{{- end -}}

{{/* "true" when the coordinator deploys through the deployer: only if there is a serving
Deployment to deploy to. */}}
{{- define "fmtune.deploys" -}}
{{- if and .Values.coordinator.deploy .Values.serving.enabled }}true{{ end -}}
{{- end -}}

{{/* What every pod carries: the pod security context and the registry credentials.
Called with (dict "root" $ "securityContext" <optional override>). */}}
{{- define "fmtune.podCommon" -}}
securityContext:
  {{- toYaml (.securityContext | default .root.Values.podSecurityContext) | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The volume's two trees, mounted separately: workers see the tuner tree only, and only the
coordinator may write the model repository that TF Serving loads. */}}
{{- define "fmtune.runsMount" -}}
- name: data
  mountPath: /data/runs
  subPath: runs
{{- end -}}

{{- define "fmtune.modelsMount" -}}
- name: data
  mountPath: /data/models
  subPath: models
{{- end -}}

{{/* TF Serving's batching parameters (the serving pod restarts when they change). */}}
{{- define "fmtune.batchingConfig" -}}
max_batch_size { value: {{ .Values.serving.batching.maxBatchSize }} }
batch_timeout_micros { value: {{ .Values.serving.batching.batchTimeoutMicros }} }
num_batch_threads { value: {{ .Values.serving.batching.numBatchThreads }} }
max_enqueued_batches { value: {{ .Values.serving.batching.maxEnqueuedBatches }} }
{{- end -}}

{{- define "fmtune.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Writable places TensorFlow, Keras, matplotlib and Python need under a read-only root. */}}
{{- define "fmtune.scratchEnv" -}}
- name: HOME
  value: /tmp/home
- name: KERAS_HOME
  value: /tmp/keras
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: XDG_CACHE_HOME
  value: /tmp/cache
- name: PYTHONUNBUFFERED
  value: "1"
- name: TF_CPP_MIN_LOG_LEVEL
  value: "2"
{{- end -}}

{{- define "fmtune.scratchVolume" -}}
- name: scratch
  emptyDir:
    sizeLimit: {{ .Values.scratch.sizeLimit }}
{{- end -}}

{{- define "fmtune.experimentArgs" -}}
- --preset
- {{ .Values.experiment.preset | quote }}
- --config
- /etc/fmtune/experiment.yaml
{{- end -}}
