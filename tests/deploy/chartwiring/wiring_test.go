// Package chartwiring checks the chart against the binary it deploys: every container that runs
// /usr/bin/slicer is given only flags and environment variables that `slicer <command>` knows
// (the built binary parses the rendered arguments; its --help lists the variables), and the
// paths the flags name are wired to the volumes that make them true (the plugin's shim folder
// seen at its host path, the arbiter's socket directory shared by its host path with the plugin,
// the metrics port, the host PID namespace the arbiter's client identity needs), and the arbiter
// starts on the config file the chart renders for it.
//
// Inputs (tests/deploy/run.sh sets them): DEPLOY_RENDERED_DIR, a folder of `helm template`
// outputs (*.yaml, one per values set), and SLICER_BIN, the built slicer binary.
package chartwiring

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Variables the chart may set that the slicer binary does not read, and who reads them.
var notForSlicer = map[string]string{
	"NVIDIA_VISIBLE_DEVICES":     "the NVIDIA container runtime (which GPUs the container gets)",
	"NVIDIA_DRIVER_CAPABILITIES": "the NVIDIA container runtime (which driver libraries it mounts)",
	"PATH":                       "mps-daemon: where nvidia-cuda-mps-control and -server are found under a driver root",
	"LD_LIBRARY_PATH":            "mps-daemon: the driver's libraries for the MPS server under a driver root",
}

// Variables slicer reads outside its flag table (so --help does not list them).
var readDirectly = map[string]string{
	"DP_DISABLE_HEALTHCHECKS": "device-plugin: XIDs to ignore (NVIDIA's variable)",
	"DP_ENABLE_HEALTHCHECKS":  "device-plugin: XIDs to act on (NVIDIA's variable)",
}

type rendered struct {
	name            string
	daemonSets      []*appsv1.DaemonSet
	services        []*corev1.Service
	serviceMonitors []serviceMonitor
	configMaps      []*corev1.ConfigMap
}

// serviceMonitor is the part of a Prometheus Operator ServiceMonitor this check reads.
type serviceMonitor struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port string `json:"port"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func load(t *testing.T) []rendered {
	t.Helper()
	dir := os.Getenv("DEPLOY_RENDERED_DIR")
	if dir == "" {
		t.Fatal("DEPLOY_RENDERED_DIR must name a folder of rendered charts (tests/deploy/run.sh)")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rendered charts in %s (%v)", dir, err)
	}
	sort.Strings(files)
	var out []rendered
	for _, f := range files {
		r := rendered{name: strings.TrimSuffix(filepath.Base(f), ".yaml")}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(fh))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			switch meta.APIVersion + "/" + meta.Kind {
			case "apps/v1/DaemonSet":
				ds := &appsv1.DaemonSet{}
				if err := yaml.UnmarshalStrict(doc, ds); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				r.daemonSets = append(r.daemonSets, ds)
			case "v1/Service":
				s := &corev1.Service{}
				if err := yaml.UnmarshalStrict(doc, s); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				r.services = append(r.services, s)
			case "v1/ConfigMap":
				cm := &corev1.ConfigMap{}
				if err := yaml.UnmarshalStrict(doc, cm); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				r.configMaps = append(r.configMaps, cm)
			case "monitoring.coreos.com/v1/ServiceMonitor":
				var m serviceMonitor
				if err := yaml.Unmarshal(doc, &m); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				r.serviceMonitors = append(r.serviceMonitors, m)
			}
		}
		fh.Close()
		if len(r.daemonSets) == 0 {
			t.Fatalf("%s: no DaemonSet", f)
		}
		out = append(out, r)
	}
	return out
}

func slicerBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SLICER_BIN")
	if bin == "" {
		t.Fatal("SLICER_BIN must name the built slicer binary (tests/deploy/run.sh)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("SLICER_BIN: %v", err)
	}
	return bin
}

// slicerContainers returns the containers and init containers that run slicer, by name.
func slicerContainers(ds *appsv1.DaemonSet) map[string]*corev1.Container {
	out := map[string]*corev1.Container{}
	spec := &ds.Spec.Template.Spec
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			c := &list[i]
			if len(c.Command) > 0 && path.Base(c.Command[0]) == "slicer" {
				out[c.Name] = c
			}
		}
	}
	return out
}

// argv is the slicer command line after the binary: subcommand, then flags.
func argv(c *corev1.Container) []string {
	return append(append([]string{}, c.Command[1:]...), c.Args...)
}

var envInHelp = regexp.MustCompile(`\[\$([A-Za-z_][A-Za-z0-9_]*)\]`)

// TestFlagsAndEnvironmentAreKnownToTheBinary: `slicer <command> <the chart's args> --help` exits 0
// only if every flag parses; the help lists the variables each flag reads.
func TestFlagsAndEnvironmentAreKnownToTheBinary(t *testing.T) {
	bin := slicerBin(t)
	for _, r := range load(t) {
		for _, ds := range r.daemonSets {
			for name, c := range slicerContainers(ds) {
				args := argv(c)
				if len(args) == 0 {
					t.Errorf("%s: container %s runs slicer without a subcommand", r.name, name)
					continue
				}
				cmd := exec.Command(bin, append(args, "--help")...)
				cmd.Env = []string{"PATH=/usr/bin:/bin"}
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Errorf("%s: container %s: slicer %s --help: %v\n%s", r.name, name,
						strings.Join(args, " "), err, out)
					continue
				}
				known := map[string]bool{}
				for _, m := range envInHelp.FindAllStringSubmatch(string(out), -1) {
					known[m[1]] = true
				}
				if len(known) == 0 {
					t.Errorf("%s: slicer %s --help lists no environment variables:\n%s", r.name,
						args[0], out)
				}
				for _, e := range c.Env {
					if known[e.Name] || notForSlicer[e.Name] != "" || readDirectly[e.Name] != "" {
						continue
					}
					t.Errorf("%s: container %s sets %s, which `slicer %s` does not read (its --help "+
						"lists %v)", r.name, name, e.Name, args[0], sortedKeys(known))
				}
				if len(c.EnvFrom) > 0 {
					t.Errorf("%s: container %s uses envFrom, which this check cannot see through",
						r.name, name)
				}
			}
		}
	}
}

// TestMpsRootIsShared: the plugin and slicer mps-daemon name the same MPS root, each sees it at
// its host path (the plugin hands host paths under it to the kubelet), writable (the plugin writes
// `desired`, the daemon the pipes and state), and the daemon's /dev/shm is <root>/shm, which
// Allocate mounts as the MPS clients' /dev/shm.
func TestMpsRootIsShared(t *testing.T) {
	for _, r := range load(t) {
		var plugin, daemon *appsv1.DaemonSet
		for _, ds := range r.daemonSets {
			cs := slicerContainers(ds)
			if cs["device-plugin"] != nil {
				plugin = ds
			}
			if cs["mps-control-daemon"] != nil {
				daemon = ds
			}
		}
		if plugin == nil {
			t.Errorf("%s: no device-plugin DaemonSet", r.name)
			continue
		}
		dp := slicerContainers(plugin)["device-plugin"]
		root, ok := flag(argv(dp), "mps-root")
		if !ok {
			t.Errorf("%s: device-plugin: --mps-root not set", r.name)
			continue
		}
		check := func(who string, ds *appsv1.DaemonSet, c *corev1.Container) {
			vol, m := mountedFrom(&ds.Spec.Template.Spec, c, root)
			switch {
			case hostPathOf(vol) != path.Clean(root):
				t.Errorf("%s: %s: the MPS root %s is not the host folder mounted at the same path",
					r.name, who, root)
			case m.ReadOnly:
				t.Errorf("%s: %s: the MPS root is mounted read-only", r.name, who)
			}
		}
		check("device-plugin", plugin, dp)
		if daemon == nil {
			continue // mps.controlDaemon.enabled=false
		}
		md := slicerContainers(daemon)["mps-control-daemon"]
		if args := argv(md); len(args) == 0 || args[0] != "mps-daemon" {
			t.Errorf("%s: mps-control-daemon does not run `slicer mps-daemon`: %v", r.name, args)
		}
		if v, _ := flag(argv(md), "mps-root"); path.Clean(v) != path.Clean(root) {
			t.Errorf("%s: mps-daemon --mps-root=%s, device-plugin --mps-root=%s", r.name, v, root)
		}
		check("mps-control-daemon", daemon, md)
		if vol, _ := mountedFrom(&daemon.Spec.Template.Spec, md, "/dev/shm"); hostPathOf(vol) !=
			path.Join(path.Clean(root), "shm") {
			t.Errorf("%s: mps-control-daemon: /dev/shm is not the host folder %s/shm that MPS "+
				"clients get as theirs", r.name, root)
		}
		if md.SecurityContext == nil || md.SecurityContext.Privileged == nil ||
			!*md.SecurityContext.Privileged {
			t.Errorf("%s: mps-control-daemon is not privileged (it sets compute modes)", r.name)
		}
		if sel := daemon.Spec.Selector.MatchLabels; labelsMatch(sel, plugin.Spec.Template.Labels) {
			t.Errorf("%s: the MPS DaemonSet's selector %v matches the plugin's pods", r.name, sel)
		}
		if sel := plugin.Spec.Selector.MatchLabels; labelsMatch(sel, daemon.Spec.Template.Labels) {
			t.Errorf("%s: the plugin DaemonSet's selector %v matches the MPS pods", r.name, sel)
		}
	}
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// flag returns the value of the last --name=value or --name value in args.
func flag(args []string, name string) (string, bool) {
	value, found := "", false
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			value, found = v, true
		} else if a == "--"+name && i+1 < len(args) {
			value, found = args[i+1], true
		}
	}
	return value, found
}

// mountedFrom returns the volume mounted at exactly dir in c, or nil.
func mountedFrom(spec *corev1.PodSpec, c *corev1.Container, dir string) (*corev1.Volume,
	*corev1.VolumeMount) {
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for j := range spec.Volumes {
			if spec.Volumes[j].Name == m.Name {
				return &spec.Volumes[j], m
			}
		}
	}
	return nil, nil
}

func hostPathOf(v *corev1.Volume) string {
	if v == nil || v.HostPath == nil {
		return ""
	}
	return path.Clean(v.HostPath.Path)
}

// TestPathsAreWired: what the flags say is where the volumes put things.
func TestPathsAreWired(t *testing.T) {
	for _, r := range load(t) {
		for _, ds := range r.daemonSets {
			spec := &ds.Spec.Template.Spec
			cs := slicerContainers(ds)
			dp := cs["device-plugin"]
			if dp == nil && cs["mps-control-daemon"] != nil {
				continue // TestMpsRootIsShared
			}
			if dp == nil {
				t.Errorf("%s: no device-plugin container running slicer", r.name)
				continue
			}
			pa := argv(dp)
			errorf := func(format string, args ...any) {
				t.Helper()
				t.Errorf(r.name+": "+format, args...)
			}

			// Paths the plugin uses inside its container.
			for _, f := range []string{"kubelet-socket", "feature-file"} {
				v, ok := flag(pa, f)
				if !ok {
					errorf("device-plugin: --%s not set", f)
					continue
				}
				if vol, _ := mountedFrom(spec, dp, path.Dir(v)); hostPathOf(vol) == "" {
					errorf("device-plugin: --%s=%s: %s is not a hostPath mount", f, v, path.Dir(v))
				}
			}
			// A driver under its own root: the plugin loads libnvidia-ml.so.1 from under the path
			// --nvidia-driver-root names, inside its container, so that host folder must be
			// mounted there.
			if v, ok := flag(pa, "nvidia-driver-root"); ok && path.Clean(v) != "/" {
				vol, m := mountedFrom(spec, dp, path.Clean(v))
				switch {
				case hostPathOf(vol) != path.Clean(v):
					errorf("device-plugin: --nvidia-driver-root=%s is not the host folder mounted at "+
						"the same path (the plugin would find no NVML)", v)
				case !m.ReadOnly:
					errorf("device-plugin: the driver root is mounted read-write")
				}
			}
			if v, ok := flag(pa, "config-dir"); ok {
				if vol, _ := mountedFrom(spec, dp, v); vol == nil || vol.ConfigMap == nil {
					errorf("device-plugin: --config-dir=%s is not a ConfigMap mount", v)
				}
			}
			// The shim folder is a host path (the kubelet mounts files from it into containers) that
			// the plugin must see at that same path (it checks libslicer.so and writes
			// ld.so.preload there), and the install-shim init container fills it.
			shim, ok := flag(pa, "shim-dir")
			if !ok {
				errorf("device-plugin: --shim-dir not set")
			} else {
				vol, m := mountedFrom(spec, dp, shim)
				switch {
				case hostPathOf(vol) != path.Clean(shim):
					errorf("device-plugin: --shim-dir=%s is not the host folder %s mounted at the "+
						"same path (without it, memory-capped allocations are refused)", shim, shim)
				case m.ReadOnly:
					errorf("device-plugin: the shim folder is mounted read-only: the plugin writes " +
						"ld.so.preload there")
				}
				filled := false
				for _, ic := range spec.InitContainers {
					for _, m := range ic.VolumeMounts {
						filled = filled || (vol != nil && m.Name == vol.Name)
					}
				}
				if !filled {
					errorf("no init container installs the shim into the --shim-dir volume")
				}
			}

			arb := cs["arbiter"]
			hostSocket, wired := flag(pa, "arbiter-socket")
			if arb == nil {
				if wired {
					errorf("device-plugin: --arbiter-socket=%s without an arbiter container: "+
						"shared containers would mount a directory nobody serves", hostSocket)
				}
				continue
			}
			aa := argv(arb)
			sock, ok := flag(aa, "socket")
			switch {
			case !ok:
				errorf("arbiter: --socket not set")
			case !wired:
				errorf("arbiter runs but the device plugin has no --arbiter-socket: containers " +
					"would never reach it")
			case path.Base(sock) != path.Base(hostSocket):
				errorf("arbiter --socket=%s and device-plugin --arbiter-socket=%s name different "+
					"files", sock, hostSocket)
			default:
				vol, m := mountedFrom(spec, arb, path.Dir(sock))
				if hostPathOf(vol) != path.Dir(path.Clean(hostSocket)) {
					errorf("arbiter --socket=%s: %s is not the host folder %s the plugin hands to "+
						"containers", sock, path.Dir(sock), path.Dir(hostSocket))
				} else if m.ReadOnly {
					errorf("arbiter: its socket folder is mounted read-only")
				}
			}
			if v, _ := flag(aa, "attribution"); v != "kubelet" {
				errorf("arbiter --attribution=%q, want kubelet (auto trusts containers' claims "+
					"when the kubelet's socket is missing at start)", v)
			}
			if v, ok := flag(aa, "pod-resources-socket"); !ok {
				errorf("arbiter: --pod-resources-socket not set")
			} else if vol, _ := mountedFrom(spec, arb, path.Dir(v)); hostPathOf(vol) == "" {
				errorf("arbiter --pod-resources-socket=%s: %s is not a hostPath mount", v,
					path.Dir(v))
			}
			if proc, _ := flag(aa, "proc-root"); (proc == "" || proc == "/proc") && !spec.HostPID {
				errorf("arbiter reads /proc/<pid> of clients but the pod has no hostPID: " +
					"SO_PEERCRED gives pid 0 for processes outside its PID namespace")
			}
			port, _ := flag(aa, "metrics-port")
			named := ""
			for _, p := range arb.Ports {
				if p.Name == "metrics" {
					named = strconv.Itoa(int(p.ContainerPort))
				}
			}
			if named != port {
				errorf("arbiter --metrics-port=%s but its port named metrics is %q", port, named)
			}
			// Prometheus finds the arbiters: ServiceMonitor -> Service -> the DaemonSet's pods ->
			// the port named metrics.
			for _, svc := range r.services {
				if !subset(svc.Spec.Selector, ds.Spec.Template.Labels) {
					errorf("Service %s selects %v, not the DaemonSet's pods %v", svc.Name,
						svc.Spec.Selector, ds.Spec.Template.Labels)
				}
				for _, p := range svc.Spec.Ports {
					if p.TargetPort.StrVal != "metrics" {
						errorf("Service %s targets port %q; the arbiter's is named metrics", svc.Name,
							p.TargetPort.String())
					}
				}
			}
			for _, m := range r.serviceMonitors {
				var found *corev1.Service
				for _, svc := range r.services {
					if subset(m.Spec.Selector.MatchLabels, svc.Labels) {
						found = svc
					}
				}
				if found == nil {
					errorf("ServiceMonitor %s selects %v: no Service has those labels",
						m.Metadata.Name, m.Spec.Selector.MatchLabels)
					continue
				}
				for _, e := range m.Spec.Endpoints {
					ok := false
					for _, p := range found.Spec.Ports {
						ok = ok || p.Name == e.Port
					}
					if !ok {
						errorf("ServiceMonitor %s scrapes port %q, which Service %s does not have",
							m.Metadata.Name, e.Port, found.Name)
					}
				}
			}
		}
	}
}

func subset(want, have map[string]string) bool {
	if len(want) == 0 {
		return false
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestArbiterConfigFileIsValid: an arbiter given --config-file finds the file in a ConfigMap
// mounted at its folder, and the built binary starts on it (the arbiter's parser is stricter than
// the chart's schema: ranges, combinations). Values sets that render no config file are skipped.
func TestArbiterConfigFileIsValid(t *testing.T) {
	bin := slicerBin(t)
	checked := 0
	for _, r := range load(t) {
		for _, ds := range r.daemonSets {
			arb := slicerContainers(ds)["arbiter"]
			if arb == nil {
				continue
			}
			file, ok := flag(argv(arb), "config-file")
			if !ok {
				continue
			}
			spec := &ds.Spec.Template.Spec
			vol, _ := mountedFrom(spec, arb, path.Dir(file))
			if vol == nil || vol.ConfigMap == nil {
				t.Errorf("%s: arbiter --config-file=%s: %s is not a ConfigMap mount", r.name, file,
					path.Dir(file))
				continue
			}
			var text string
			found := false
			for _, cm := range r.configMaps {
				if cm.Name == vol.ConfigMap.Name {
					text, found = cm.Data[path.Base(file)]
				}
			}
			if !found {
				t.Errorf("%s: arbiter --config-file=%s: ConfigMap %s (rendered by the chart) has no "+
					"key %s", r.name, file, vol.ConfigMap.Name, path.Base(file))
				continue
			}
			dir := t.TempDir()
			cfg := filepath.Join(dir, "arbiter.yaml")
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			// Starts, serves, and exits by itself once idle: exit 0 only if the file was accepted.
			cmd := exec.Command(bin, "arbiter", "--config-file="+cfg,
				"--socket="+filepath.Join(dir, "a.sock"), "--metrics-port=0",
				"--attribution=none", "--exit-when-idle=1ms")
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: the arbiter refuses the chart's config file: %v\n%s\n--- file:\n%s",
					r.name, err, out, text)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Error("no values set renders an arbiter config file (ci/full.yaml should)")
	}
}
