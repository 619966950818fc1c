{{/*
Names and labels. Same scheme as NVIDIA's chart so that overrides carry over.
*/}}
{{- define "gpu-slicer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gpu-slicer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gpu-slicer.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "gpu-slicer.selectorLabels" -}}
{{- if .Values.selectorLabelsOverride -}}
{{ toYaml .Values.selectorLabelsOverride }}
{{- else -}}
app.kubernetes.io/name: {{ include "gpu-slicer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- end -}}

{{/* The MPS control-daemon pods' labels: never the plugin DaemonSet's selector (a different
name), so that neither DaemonSet claims the other's pods, whatever selectorLabelsOverride says. */}}
{{- define "gpu-slicer.mpsSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-mps-control-daemon" (include "gpu-slicer.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gpu-slicer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gpu-slicer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "gpu-slicer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gpu-slicer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gpu-slicer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Configs. "configs" is the effective name -> file map the chart owns (empty when config.name
points at an external ConfigMap), as YAML so callers can fromYaml it.
*/}}
{{- define "gpu-slicer.configs" -}}
{{- if .Values.config.map -}}
{{ toYaml .Values.config.map }}
{{- else if not .Values.config.name -}}
{{- $ts := .Values.timeSlicing -}}
default: |-
  version: v1
  sharing:
    timeSlicing:
      renameByDefault: {{ $ts.renameByDefault }}
      failRequestsGreaterThanOne: {{ $ts.failRequestsGreaterThanOne }}
      resources:
      - name: nvidia.com/gpu
        replicas: {{ $ts.replicas }}
{{- end -}}
{{- end -}}

{{/*
The arbiter's socket: its file name, and its path on the host (in hostPaths.arbiterDir), which
the device plugin hands to shared containers as a read-only mount of that directory.
*/}}
{{- define "gpu-slicer.arbiterSocketName" -}}
arbiter.sock
{{- end -}}

{{- define "gpu-slicer.arbiterHostSocket" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.hostPaths.arbiterDir) (include "gpu-slicer.arbiterSocketName" .) -}}
{{- end -}}

{{- define "gpu-slicer.configMapName" -}}
{{- default (printf "%s-config" (include "gpu-slicer.fullname" .)) .Values.config.name -}}
{{- end -}}

{{/* The config name a node without the label gets; empty when the fallbacks decide. */}}
{{- define "gpu-slicer.defaultConfig" -}}
{{- $configs := include "gpu-slicer.configs" . | fromYaml -}}
{{- if .Values.config.default -}}
{{- .Values.config.default -}}
{{- else if hasKey $configs "default" -}}
default
{{- end -}}
{{- end -}}

{{/*
Checks that a schema cannot express. Each message names the value and says what would be right.
Included from every template so that `helm template` fails before anything is rendered.
*/}}
{{- define "gpu-slicer.validate" -}}
{{- $v := .Values -}}
{{- if and (eq (include "gpu-slicer.namespace" .) "default") (not $v.allowDefaultNamespace) -}}
{{- fail "gpu-slicer: refusing to install into the \"default\" namespace; use -n <namespace> (e.g. kube-system or gpu-slicer), or set allowDefaultNamespace=true" -}}
{{- end -}}
{{- if and $v.config.name $v.config.map -}}
{{- fail (printf "gpu-slicer: set only one of config.name (%q, an existing ConfigMap) or config.map (%d configs the chart creates)" $v.config.name (len $v.config.map)) -}}
{{- end -}}
{{- range $name, $text := $v.config.map -}}
{{- if not (kindIs "string" $text) -}}
{{- fail (printf "gpu-slicer: config.map.%s must be the config file as a string (use `%s: |-` and indent the YAML under it), got a %s" $name $name (kindOf $text)) -}}
{{- end -}}
{{- $parsed := fromYaml $text -}}
{{- if hasKey $parsed "Error" -}}
{{- fail (printf "gpu-slicer: config.map.%s is not valid YAML: %s" $name $parsed.Error) -}}
{{- end -}}
{{- if ne (toString $parsed.version) "v1" -}}
{{- fail (printf "gpu-slicer: config.map.%s must start with `version: v1` (NVIDIA's config format), found version %q" $name (toString $parsed.version)) -}}
{{- end -}}
{{- end -}}
{{- if and $v.config.default $v.config.map (not (hasKey $v.config.map $v.config.default)) -}}
{{- fail (printf "gpu-slicer: config.default is %q but config.map has no such key (it has: %s)" $v.config.default (keys $v.config.map | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if not $v.devicePlugin.enabled -}}
{{- fail "gpu-slicer: devicePlugin.enabled=false leaves nothing to deploy; gpu-slicer is the device plugin (uninstall the release instead)" -}}
{{- end -}}
{{- range $key := list "gdrcopyEnabled" "gdsEnabled" "mofedEnabled" -}}
{{- if index $v $key -}}
{{- fail (printf "gpu-slicer: %s is an NVIDIA device plugin option that gpu-slicer does not support; remove it or set it to null" $key) -}}
{{- end -}}
{{- end -}}
{{- if $v.deviceDiscoveryStrategy -}}
{{- fail (printf "gpu-slicer: deviceDiscoveryStrategy=%q is not supported (gpu-slicer always discovers GPUs through NVML); remove it" $v.deviceDiscoveryStrategy) -}}
{{- end -}}
{{- if $v.gfd.enabled -}}
{{- fail "gpu-slicer: gfd.enabled=true: gpu-slicer writes its GPU labels itself (NFD local feature file) and does not bundle gpu-feature-discovery; set gfd.enabled=false" -}}
{{- end -}}
{{- if $v.nfd.enabled -}}
{{- fail "gpu-slicer: nfd.enabled=true: this chart does not bundle node-feature-discovery; install NFD's own chart for the labels, and set nfd.enabled=false here" -}}
{{- end -}}
{{- if $v.karpenter.enabled -}}
{{- $_ := include "gpu-slicer.karpenter.replicas" . -}}
{{- end -}}
{{- end -}}

{{/*
Karpenter. The NodePool labels its nodes with a config name; the NodeOverlays advertise the
shares that config gives, so replicas live in one place (the config).
*/}}
{{- define "gpu-slicer.karpenter.config" -}}
{{- $k := .Values.karpenter.nodePool -}}
{{- if $k.config -}}
{{- $k.config -}}
{{- else -}}
{{- default "default" (include "gpu-slicer.defaultConfig" .) -}}
{{- end -}}
{{- end -}}

{{/* The sharing entry (time-slicing, or MPS when the config has sharing.mps: a config has only
one of them) for nvidia.com/gpu in the pool's config, as YAML ({} if none). */}}
{{- define "gpu-slicer.karpenter.gpuEntry" -}}
{{- $configs := include "gpu-slicer.configs" . | fromYaml -}}
{{- $name := include "gpu-slicer.karpenter.config" . -}}
{{- $entry := dict -}}
{{- if hasKey $configs $name -}}
{{- $cfg := index $configs $name | fromYaml -}}
{{- $ts := dig "sharing" "timeSlicing" (dict) $cfg -}}
{{- if dig "sharing" "mps" "" $cfg -}}
{{- $ts = dig "sharing" "mps" (dict) $cfg -}}
{{- end -}}
{{- range (dig "resources" (list) $ts) -}}
{{- if eq .name "nvidia.com/gpu" -}}
{{- $entry = merge (dict "renameByDefault" (dig "renameByDefault" false $ts)) . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $entry -}}
{{- end -}}

{{- define "gpu-slicer.karpenter.replicas" -}}
{{- $v := .Values -}}
{{- $name := include "gpu-slicer.karpenter.config" . -}}
{{- if $v.karpenter.replicas -}}
{{- $v.karpenter.replicas -}}
{{- else if $v.config.name -}}
{{- fail (printf "gpu-slicer: karpenter.replicas must be set when config.name (%q) names an external ConfigMap: the chart cannot read it to learn how many shares config %q gives per GPU" $v.config.name $name) -}}
{{- else -}}
{{- $configs := include "gpu-slicer.configs" . | fromYaml -}}
{{- if not (hasKey $configs $name) -}}
{{- fail (printf "gpu-slicer: karpenter.nodePool.config is %q but there is no such config (configs: %s)" $name (keys $configs | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $entry := include "gpu-slicer.karpenter.gpuEntry" . | fromYaml -}}
{{- if not $entry.replicas -}}
{{- fail (printf "gpu-slicer: config %q does not share nvidia.com/gpu (no sharing.timeSlicing or sharing.mps resources entry for it), so Karpenter would see no more than whole GPUs; point karpenter.nodePool.config at a sliced config or set karpenter.replicas" $name) -}}
{{- end -}}
{{- if $entry.devices -}}
{{- fail (printf "gpu-slicer: config %q slices only some GPUs (devices: %v), so shares are not GPUs x replicas; set karpenter.replicas to what each node really advertises per GPU" $name $entry.devices) -}}
{{- end -}}
{{- $entry.replicas -}}
{{- end -}}
{{- end -}}

{{/* The resource name the shares are advertised under: rename, or .shared with renameByDefault. */}}
{{- define "gpu-slicer.karpenter.resourceName" -}}
{{- $entry := include "gpu-slicer.karpenter.gpuEntry" . | fromYaml -}}
{{- if $entry.rename -}}
{{- $entry.rename -}}
{{- else if $entry.renameByDefault -}}
nvidia.com/gpu.shared
{{- else -}}
nvidia.com/gpu
{{- end -}}
{{- end -}}
