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

{{/* Your own model and data: model.*, data.*. The checks JSON Schema cannot make (values that
depend on each other), run by the config ConfigMap, which every render has. */}}
{{- define "fmtune.checkUserValues" -}}
{{- $hypermodel := .Values.model.hypermodel | default "" -}}
{{- $module := splitList ":" $hypermodel | first -}}
{{- if and .Values.model.source (not $hypermodel) -}}
{{- fail "model.source is set but model.hypermodel is not: name the module and its attribute, e.g. --set model.hypermodel=my_model:build_model (model.source is saved as my_model.py)" -}}
{{- end -}}
{{- if hasSuffix ".py" $module -}}
{{- fail (printf "model.hypermodel %q names a file: in a pod name the module, %s:%s, importable from your image or given as model.source" $hypermodel (trimSuffix ".py" $module) (splitList ":" $hypermodel | last)) -}}
{{- end -}}
{{- if and .Values.model.source (contains "." $module) -}}
{{- fail (printf "model.hypermodel %q: model.source is a single module, so the part before ':' must be a module name without dots (e.g. %s:...); a package belongs in your image (image.repository, image.tag)" $hypermodel (splitList "." $module | last)) -}}
{{- end -}}
{{- $data := .Values.data -}}
{{- $kind := $data.kind | default "" -}}
{{- $set := list -}}
{{- range $key := list "path" "name" "loader" "imageSize" "colorMode" "testFraction" "valFraction" "classNames" "flipInvariant" "darkBackground" -}}
{{- $value := index $data $key -}}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) -}}
{{- $set = append $set $key -}}
{{- end -}}
{{- end -}}
{{- if and $set (not $kind) -}}
{{- fail (printf "data.%s is set but data.kind is not: set data.kind (folder, npz, loader or idx)" (first $set)) -}}
{{- end -}}
{{- /* Which kinds read each value (fmtune.data.source's _APPLIES). */ -}}
{{- $applies := dict "path" (list "idx" "folder" "npz") "name" (list "idx" "folder" "npz" "loader") "loader" (list "loader") "imageSize" (list "folder") "colorMode" (list "folder") "testFraction" (list "folder") "classNames" (list "folder" "npz" "loader") -}}
{{- range $key := $set -}}
{{- if and (hasKey $applies $key) (not (has $kind (get $applies $key))) -}}
{{- fail (printf "data.%s does not apply to data.kind %s (only to %s)" $key $kind (get $applies $key | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $kind "idx") (not $data.name) -}}
{{- fail "data.kind idx needs data.name: the dataset (fashion_mnist, mnist, or one a dataset.json in data.path declares)" -}}
{{- end -}}
{{- if and (eq $kind "folder") (not $data.path) (not $data.volume) -}}
{{- fail "data.kind folder needs data.path (the root of the class folders) or data.volume (mounted at /data/images)" -}}
{{- end -}}
{{- if and (eq $kind "npz") (not $data.path) -}}
{{- fail "data.kind npz needs data.path: the .npz file" -}}
{{- end -}}
{{- if and (eq $kind "loader") (not $data.loader) -}}
{{- fail "data.kind loader needs data.loader: module:function" -}}
{{- end -}}
{{- if has ".." (splitList "/" ($data.path | default "")) -}}
{{- fail (printf "data.path %q: no '..' in it (the path stays inside the image, data.volume or the chart's claim)" $data.path) -}}
{{- end -}}
{{- if and $data.path (not (isAbs $data.path)) (not $data.volume) (has (splitList "/" (clean $data.path) | first) (list "runs" "models" ".")) -}}
{{- fail (printf "data.path %q: on the chart's claim, name a folder or file beside runs/ and models/ (the tuner tree and the model repository), e.g. images/clothes" $data.path) -}}
{{- end -}}
{{- end -}}

{{/* Where the pods read data.path: as given when absolute (inside the image), under data.volume's
mount, else the claim's data.path mounted at /data/images/<its last name>. Empty: no path. */}}
{{- define "fmtune.dataPath" -}}
{{- $path := .Values.data.path | default "" -}}
{{- if isAbs $path -}}
{{- $path -}}
{{- else if .Values.data.volume -}}
{{- clean (printf "/data/images/%s" $path) -}}
{{- else if $path -}}
{{- printf "/data/images/%s" (base (clean $path)) -}}
{{- end -}}
{{- end -}}

{{/* The images' mount in the coordinator and the workers (read-only), if any. */}}
{{- define "fmtune.dataMount" -}}
{{- $path := .Values.data.path | default "" -}}
{{- if .Values.data.volume -}}
- name: images
  mountPath: /data/images
  readOnly: true
{{- else if and $path (not (isAbs $path)) -}}
- name: data
  mountPath: {{ include "fmtune.dataPath" . }}
  subPath: {{ clean $path }}
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "fmtune.dataVolume" -}}
{{- with .Values.data.volume -}}
- name: images
{{- if kindIs "string" . }}
  persistentVolumeClaim:
    claimName: {{ . }}
    readOnly: true
{{- else }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* model.source: a ConfigMap holding <module>.py, on PYTHONPATH at a fixed directory. */}}
{{- define "fmtune.pluginDir" -}}/opt/fmtune/plugins{{- end -}}

{{- define "fmtune.modelSourceName" -}}
{{- printf "%s-model" (include "fmtune.fullname" .) -}}
{{- end -}}

{{- define "fmtune.modelModule" -}}
{{- splitList ":" .Values.model.hypermodel | first -}}
{{- end -}}

{{- define "fmtune.modelSourceEnv" -}}
{{- if .Values.model.source -}}
# model.source's module: importable as {{ include "fmtune.modelModule" . }}
- name: PYTHONPATH
  value: {{ include "fmtune.pluginDir" . }}
{{- end -}}
{{- end -}}

{{- define "fmtune.modelSourceMount" -}}
{{- if .Values.model.source -}}
- name: model-source
  mountPath: {{ include "fmtune.pluginDir" . }}
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "fmtune.modelSourceVolume" -}}
{{- if .Values.model.source -}}
- name: model-source
  configMap:
    name: {{ include "fmtune.modelSourceName" . }}
{{- end -}}
{{- end -}}

{{/* Pod annotation: the pods of a revision carry the source they import. Jobs are named per
revision, so any upgrade (this change among others) runs new pods that mount the new text. */}}
{{- define "fmtune.modelSourceAnnotation" -}}
{{- if .Values.model.source -}}
checksum/model-source: {{ .Values.model.source | sha256sum }}
{{- end -}}
{{- end -}}

{{/* TensorFlow threads for a container: "threads" when set, else its CPU limit rounded up ("2",
1.5, "1500m"), else "otherwise" with no limit. */}}
{{- define "fmtune.threads" -}}
{{- $threads := int .threads -}}
{{- $cpu := dig "limits" "cpu" "" .resources | toString -}}
{{- if and (eq $threads 0) $cpu -}}
{{- if hasSuffix "m" $cpu -}}
{{- $threads = div (add (trimSuffix "m" $cpu | int) 999) 1000 -}}
{{- else -}}
{{- $threads = ceil (float64 $cpu) | int -}}
{{- end -}}
{{- end -}}
{{- if eq $threads 0 }}{{ .otherwise }}{{ else }}{{ max $threads 1 }}{{ end -}}
{{- end -}}

{{/* TF Serving's thread pools: serving.threads, else its CPU limit rounded up, else 1. */}}
{{- define "fmtune.servingThreads" -}}
{{- include "fmtune.threads" (dict "threads" .Values.serving.threads "resources" .Values.serving.resources "otherwise" 1) -}}
{{- end -}}

{{/* The coordinator's first step: runs/ and models/ exist and are writable by the pods' user,
before hours of search. A volume whose driver does not apply fsGroup (NFS, GKE Filestore) keeps a
root-owned root, where neither can be made, and the kubelet makes a missing subPath as root. */}}
{{- define "fmtune.volumeCheck" -}}
- name: volume-check
  image: {{ include "fmtune.image" .Values.image }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - /bin/sh
    - -c
    - >-
      for tree in runs models secrets state; do
      mkdir -p "/volume/$tree" 2>/dev/null && [ -w "/volume/$tree" ] && continue;
      echo "fmtune: $tree/ on the volume {{ include "fmtune.claimName" . }} cannot be made or written by uid $(id -u) gid $(id -g):
      its storage driver does not apply fsGroup (NFS, GKE Filestore), or a pod made it as root.
      Give the volume's root (or runs/ and models/) to $(id -u):$(id -g) once, e.g. chown from a root pod
      (README, Kubernetes: storage)." >&2;
      exit 1;
      done
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {cpu: 100m, memory: 64Mi}
  securityContext:
    {{- include "fmtune.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: data
      mountPath: /volume
{{- end -}}

{{/* Where the dashboard listens in the coordinator's pod (dashboard.host). Loopback by default:
`kubectl port-forward` connects to the pod's loopback, so it works, and nothing on the pod network
reaches the dashboard, whether or not the cluster's CNI enforces the NetworkPolicy. Peers in
dashboard.allowFrom need it on the pod's addresses (0.0.0.0). */}}
{{- define "fmtune.dashboardHostEnv" -}}
{{- $host := .Values.dashboard.host -}}
{{- if and .Values.dashboard.enabled .Values.dashboard.allowFrom (has $host (list "127.0.0.1" "::1")) -}}
{{- fail (printf "dashboard.allowFrom admits peers over the network, but dashboard.host is %s (loopback), which only kubectl port-forward reaches: set dashboard.host=0.0.0.0 as well" $host) -}}
{{- end -}}
- name: FMTUNE_DASHBOARD_HOST
  value: {{ $host | quote }}
{{- end -}}

{{/* The oracle's secret lives on the volume beside runs/, under secrets/, which only the coordinator
mounts (and each worker's init container, read-only, to make that worker's own credential): a
worker's container, where a user's code runs, mounts runs/ alone and never sees it. */}}
{{- define "fmtune.tokenFile" -}}
{{ .dir }}/{{ include "fmtune.fullname" .root }}/oracle-token
{{- end -}}
