package conformance

// Scenarios (issue 3): the real `slicer device-plugin` under the upstream kubelet device manager.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
)

const (
	gpuRes    = "nvidia.com/gpu"
	sharedRes = "nvidia.com/gpu.shared"
	mib       = 1 << 20

	visibleDevices   = "NVIDIA_VISIBLE_DEVICES"
	volumeMountsRoot = "/var/run/nvidia-container-devices"
	cdiKind          = "k8s.device-plugin.nvidia.com/gpu"
	// gpu-slicer's own injection (DESIGN.md, "Injection").
	memoryLimitsEnv = "SLICER_MEMORY_LIMITS"
	shimInContainer = "/usr/local/lib/gpu-slicer/libslicer.so"
	preloadFile     = "/etc/ld.so.preload"
	// The node arbiter (docs/arbiter.md): its socket directory, mounted read-only, and who the
	// container is (its replica IDs, which the arbiter checks against the kubelet's records).
	arbiterSocketEnv   = "SLICER_ARBITER_SOCKET"
	replicaIDsEnv      = "SLICER_REPLICA_IDS"
	arbiterInContainer = "/var/run/gpu-slicer"
)

// replicaIDs returns the IDs NVIDIA's plugin gives the replicas of a GPU: <uuid>::0..n-1. The same
// IDs matter for a drop-in: the kubelet's checkpoint from NVIDIA's plugin stays valid.
func replicaIDs(g gpu, n int) []string {
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, fmt.Sprintf("%s::%d", g.uuid, i))
	}
	return ids
}

// gpuOf maps a replica ID (or a whole GPU's UUID) to its GPU's UUID.
func gpuOf(t *testing.T, id string) string {
	t.Helper()
	uuid, n, found := strings.Cut(id, "::")
	if found {
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("device ID %q: not <uuid>::<n>", id)
		}
	}
	return uuid
}

// byGPU counts a container's replicas per GPU UUID.
func byGPU(t *testing.T, ids []string) map[string]int {
	m := map[string]int{}
	for _, id := range ids {
		m[gpuOf(t, id)]++
	}
	return m
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedIDs[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func equalSets(a, b []string) bool {
	return sets.New(a...).Equal(sets.New(b...))
}

// ---------------------------------------------------------------------------------------------
// 1. Registration; capacity = GPUs x replicas; rename/devices split.

func TestRegistrationCapacity(t *testing.T) {
	gpus := fakeGPUs(2)
	n := startNode(t, gpus, timeSlicing(4, false), map[string]int64{gpuRes: 8})

	got := sortedIDs(n.k.healthyDevices(gpuRes))
	want := sortedCopy(append(replicaIDs(gpus[0], 4), replicaIDs(gpus[1], 4)...))
	if !equalSets(got, want) {
		t.Errorf("kubelet's healthy %s devices:\n  got  %v\n  want %v", gpuRes, got, want)
	}
	for id, d := range n.k.healthyDevices(gpuRes) {
		if d.Health != pluginapi.Healthy {
			t.Errorf("device %s health %q", id, d.Health)
		}
		if d.Topology == nil || len(d.Topology.Nodes) != 1 || d.Topology.Nodes[0].ID != 0 {
			t.Errorf("device %s topology %v, want NUMA node 0 (the machine file's numaNode)", id,
				d.Topology)
		}
	}
	if c, a := n.k.resources(sharedRes); c != -1 || a != -1 {
		t.Errorf("%s advertised (capacity %d, allocatable %d) without a rename", sharedRes, c, a)
	}
}

func TestRegistrationRenameAndDevicesSplit(t *testing.T) {
	gpus := fakeGPUs(3)
	// GPU 0 by index and GPU 2 by UUID are shared 4 ways under the new name; GPU 1 stays whole.
	config := fmt.Sprintf(`version: v1
sharing:
  timeSlicing:
    resources:
      - name: nvidia.com/gpu
        rename: nvidia.com/gpu.shared
        replicas: 4
        devices: [0, %s]
`, gpus[2].uuid)
	n := startNode(t, gpus, config, map[string]int64{sharedRes: 8, gpuRes: 1})

	got := sortedIDs(n.k.healthyDevices(sharedRes))
	want := sortedCopy(append(replicaIDs(gpus[0], 4), replicaIDs(gpus[2], 4)...))
	if !equalSets(got, want) {
		t.Errorf("%s devices:\n  got  %v\n  want %v", sharedRes, got, want)
	}
	got = sortedIDs(n.k.healthyDevices(gpuRes))
	if want := []string{gpus[1].uuid}; !equalSets(got, want) {
		t.Errorf("%s devices (the unshared GPU, ID = its UUID): got %v, want %v", gpuRes, got, want)
	}
	if socks := n.p.sockets(); len(socks) != 2 {
		t.Errorf("plugin sockets %v: want one per resource (2)", socks)
	}
}

// ---------------------------------------------------------------------------------------------
// 2. A pod admitted and allocated: the container's runtime settings as the kubelet computes them.

// allocateOne starts a node with 2 GPUs x 4 replicas, admits a pod asking for `replicas` and
// returns the kubelet's run options and the GPUs holding its replicas.
func allocateOne(t *testing.T, replicas int64, args ...string) (*node, []gpu,
	*devicemanager.DeviceRunContainerOptions, map[string]int) {
	t.Helper()
	gpus := fakeGPUs(2)
	n := startNode(t, gpus, timeSlicing(4, false), map[string]int64{gpuRes: 8}, args...)
	pod := gpuPod("app", gpuRes, replicas)
	n.k.mustAdmit(pod)
	ids := n.k.devicesOf(pod, "app", gpuRes)
	if len(ids) != int(replicas) {
		t.Fatalf("kubelet assigned %v, want %d replicas", ids, replicas)
	}
	opts := n.k.runOptions(pod, "app")
	t.Logf("devices %v; run options:\n%s", ids, describeOptions(opts))
	return n, gpus, opts, byGPU(t, ids)
}

func uuidIndex(gpus []gpu, uuid string) int {
	for i, g := range gpus {
		if g.uuid == uuid {
			return i
		}
	}
	return -1
}

// checkShim checks gpu-slicer's own injection: the memory cap (memory x k/N per GPU held) and the
// preloaded shim, mounted read-only from the shim folder, with an ld.so.preload naming it.
func checkShim(t *testing.T, p *slicerPlugin, gpus []gpu,
	opts *devicemanager.DeviceRunContainerOptions, held map[string]int, replicas int) {
	t.Helper()
	var want []string
	for uuid, k := range held {
		g := gpus[uuidIndex(gpus, uuid)]
		want = append(want, fmt.Sprintf("%s=%d", uuid, int64(g.memoryMiB)*mib*int64(k)/int64(replicas)))
	}
	got := envMap(opts)[memoryLimitsEnv]
	if !equalSets(strings.Split(got, ","), want) {
		t.Errorf("%s=%q, want the entries %v (memory x k/N per GPU)", memoryLimitsEnv, got, want)
	}
	mounts := map[string]string{}
	for _, m := range opts.Mounts {
		if (m.ContainerPath == shimInContainer || m.ContainerPath == preloadFile) && m.ReadOnly {
			mounts[m.ContainerPath] = m.HostPath
		}
	}
	wantMounts := map[string]string{
		shimInContainer: filepath.Join(p.shimDir, "libslicer.so"),
		preloadFile:     filepath.Join(p.shimDir, "ld.so.preload"),
	}
	if fmt.Sprint(mounts) != fmt.Sprint(wantMounts) {
		t.Errorf("read-only shim mounts (container: host) %v, want %v", mounts, wantMounts)
	}
	if data, err := os.ReadFile(wantMounts[preloadFile]); err != nil ||
		strings.TrimSpace(string(data)) != shimInContainer {
		t.Errorf("%s holds %q (%v), want %q", wantMounts[preloadFile], data, err, shimInContainer)
	}
	if p.arbiterSocket == "" {
		checkNoArbiter(t, opts)
	}
}

// checkArbiter checks that the container reaches the node arbiter: its socket's host directory
// mounted read-only at /var/run/gpu-slicer, SLICER_ARBITER_SOCKET naming the socket there, and
// SLICER_REPLICA_IDS listing exactly the replicas the kubelet recorded for the container (the
// arbiter checks them against the kubelet's PodResources answer, which comes from that record).
func checkArbiter(t *testing.T, p *slicerPlugin, opts *devicemanager.DeviceRunContainerOptions,
	kubeletIDs []string) {
	t.Helper()
	env := envMap(opts)
	if got, want := env[arbiterSocketEnv], arbiterInContainer+"/"+filepath.Base(p.arbiterSocket); got != want {
		t.Errorf("%s=%q, want %q", arbiterSocketEnv, got, want)
	}
	if got := expandReplicaIDs(env[replicaIDsEnv]); len(got) != len(kubeletIDs) ||
		!equalSets(got, kubeletIDs) {
		t.Errorf("%s=%q, want the kubelet's devices for the container %v", replicaIDsEnv,
			env[replicaIDsEnv], kubeletIDs)
	}
	var found []string
	for _, m := range opts.Mounts {
		if m.ContainerPath == arbiterInContainer {
			found = append(found, fmt.Sprintf("%s ro=%v", m.HostPath, m.ReadOnly))
		}
	}
	if want := []string{filepath.Dir(p.arbiterSocket) + " ro=true"}; fmt.Sprint(found) != fmt.Sprint(want) {
		t.Errorf("mounts at %s: %v, want %v (the socket's directory, read-only)", arbiterInContainer,
			found, want)
	}
}

// expandReplicaIDs reads SLICER_REPLICA_IDS as the arbiter does: comma-separated, an entry
// "::<n>" being replica n of the GPU named before it.
func expandReplicaIDs(listed string) []string {
	var out []string
	gpu := ""
	for _, e := range strings.Split(listed, ",") {
		if strings.HasPrefix(e, "::") {
			e = gpu + e
		}
		gpu, _, _ = strings.Cut(e, "::")
		out = append(out, e)
	}
	return out
}

// checkNoArbiter checks that a container gets nothing of the arbiter.
func checkNoArbiter(t *testing.T, opts *devicemanager.DeviceRunContainerOptions) {
	t.Helper()
	env := envMap(opts)
	for _, k := range []string{arbiterSocketEnv, replicaIDsEnv} {
		if v, ok := env[k]; ok {
			t.Errorf("%s=%q set without an arbiter for this container", k, v)
		}
	}
	for _, m := range opts.Mounts {
		if m.ContainerPath == arbiterInContainer {
			t.Errorf("arbiter mount %+v without an arbiter for this container", m)
		}
	}
}

func TestAllocateArbiter(t *testing.T) {
	gpus := fakeGPUs(2)
	n := startNode(t, gpus, timeSlicing(4, false), map[string]int64{gpuRes: 8}, arbiterFlag(t)...)
	// 5 of 8: the container holds replicas of both GPUs; the arbiter weights it per GPU.
	pod := gpuPod("app", gpuRes, 5)
	n.k.mustAdmit(pod)
	ids := n.k.devicesOf(pod, "app", gpuRes)
	opts := n.k.runOptions(pod, "app")
	t.Logf("devices %v; run options:\n%s", ids, describeOptions(opts))
	checkShim(t, n.p, gpus, opts, byGPU(t, ids), 4)
	checkArbiter(t, n.p, opts, ids)
}

func TestAllocateEnvvar(t *testing.T) {
	n, gpus, opts, held := allocateOne(t, 2)
	if len(held) != 1 {
		t.Fatalf("2 replicas spread over GPUs %v", held)
	}
	env := envMap(opts)
	if got, want := env[visibleDevices], keys(held)[0]; got != want {
		t.Errorf("%s=%q, want %q (the GPU's UUID, once)", visibleDevices, got, want)
	}
	for _, m := range opts.Mounts {
		if strings.HasPrefix(m.ContainerPath, volumeMountsRoot) {
			t.Errorf("volume-mounts mount %+v with strategy envvar", m)
		}
	}
	if len(opts.Devices) != 0 || len(opts.CDIDevices) != 0 || len(opts.Annotations) != 0 {
		t.Errorf("device specs %v, CDI devices %v, annotations %v: want none by default",
			opts.Devices, opts.CDIDevices, opts.Annotations)
	}
	checkShim(t, n.p, gpus, opts, held, 4)
}

func TestAllocateEnvvarAcrossGPUs(t *testing.T) {
	// 5 of 8 replicas cannot fit on one GPU: both UUIDs, each once.
	n, gpus, opts, held := allocateOne(t, 5)
	got := strings.Split(envMap(opts)[visibleDevices], ",")
	if len(got) != 2 || !equalSets(got, []string{gpus[0].uuid, gpus[1].uuid}) {
		t.Errorf("%s=%q, want both GPU UUIDs, each once", visibleDevices, envMap(opts)[visibleDevices])
	}
	checkShim(t, n.p, gpus, opts, held, 4)
}

func TestAllocateIndexIDs(t *testing.T) {
	_, gpus, opts, held := allocateOne(t, 1, "--device-id-strategy", "index")
	want := strconv.Itoa(uuidIndex(gpus, keys(held)[0]))
	if got := envMap(opts)[visibleDevices]; got != want {
		t.Errorf("%s=%q, want %q (the GPU's index)", visibleDevices, got, want)
	}
}

func TestAllocateVolumeMounts(t *testing.T) {
	_, _, opts, held := allocateOne(t, 2, "--device-list-strategy", "volume-mounts")
	if got := envMap(opts)[visibleDevices]; got != volumeMountsRoot {
		t.Errorf("%s=%q, want %q", visibleDevices, got, volumeMountsRoot)
	}
	var got []string
	for _, m := range opts.Mounts {
		if strings.HasPrefix(m.ContainerPath, volumeMountsRoot+"/") {
			if m.HostPath != "/dev/null" {
				t.Errorf("mount %+v: host path want /dev/null", m)
			}
			got = append(got, strings.TrimPrefix(m.ContainerPath, volumeMountsRoot+"/"))
		}
	}
	if want := keys(held); len(got) != len(want) || !equalSets(got, want) {
		t.Errorf("device-list mounts for %v, want one for each of %v", got, want)
	}
}

func TestAllocateCDIAnnotations(t *testing.T) {
	_, _, opts, held := allocateOne(t, 2, "--device-list-strategy", "cdi-annotations")
	if len(opts.Annotations) != 1 {
		t.Fatalf("annotations %+v, want one CDI annotation", opts.Annotations)
	}
	a := opts.Annotations[0]
	if !strings.HasPrefix(a.Name, "cdi.k8s.io/nvidia-device-plugin_") {
		t.Errorf("annotation name %q, want cdi.k8s.io/nvidia-device-plugin_<id>", a.Name)
	}
	if want := cdiKind + "=" + keys(held)[0]; a.Value != want {
		t.Errorf("annotation value %q, want %q", a.Value, want)
	}
	if len(opts.CDIDevices) != 0 {
		t.Errorf("CDI devices %v with cdi-annotations only", opts.CDIDevices)
	}
}

func TestAllocateCDICRI(t *testing.T) {
	_, _, opts, held := allocateOne(t, 5, "--device-list-strategy", "cdi-cri")
	var got []string
	for _, d := range opts.CDIDevices {
		got = append(got, d.Name)
	}
	var want []string
	for _, u := range keys(held) {
		want = append(want, cdiKind+"="+u)
	}
	if len(got) != len(want) || !equalSets(got, want) {
		t.Errorf("CDI devices %v, want %v (one per GPU)", got, want)
	}
	if len(opts.Annotations) != 0 {
		t.Errorf("annotations %v with cdi-cri only", opts.Annotations)
	}
}

func TestAllocateDeviceSpecs(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	control := []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}
	for _, p := range append(control, "/dev/nvidia0", "/dev/nvidia1") {
		writeFile(t, filepath.Join(root, p), "")
	}
	_, gpus, opts, held := allocateOne(t, 2, "--pass-device-specs", "true",
		"--nvidia-driver-root", root)
	got := map[string]string{} // container path -> host path
	for _, d := range opts.Devices {
		if d.Permissions != "rw" {
			t.Errorf("device %+v: permissions want rw", d)
		}
		got[d.PathInContainer] = d.PathOnHost
	}
	want := map[string]string{}
	for _, p := range control {
		want[p] = filepath.Join(root, p)
	}
	for _, g := range gpus {
		p := fmt.Sprintf("/dev/nvidia%d", g.minor)
		if held[g.uuid] > 0 {
			want[p] = filepath.Join(root, p)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("device specs (container path: host path)\n  got  %v\n  want %v", got, want)
	}
}

// ---------------------------------------------------------------------------------------------
// 3. failRequestsGreaterThanOne: the kubelet's admission error.

func TestFailRequestsGreaterThanOne(t *testing.T) {
	n := startNode(t, fakeGPUs(2), timeSlicing(4, true), map[string]int64{gpuRes: 8})
	r := n.k.admitPod(gpuPod("two", gpuRes, 2))
	t.Logf("kubelet admission: admit=%v reason=%q message=%q", r.Admit, r.Reason, r.Message)
	if r.Admit {
		t.Fatalf("a 2-replica pod was admitted with failRequestsGreaterThanOne: true")
	}
	if r.Reason != "UnexpectedAdmissionError" {
		t.Errorf("reason %q, want UnexpectedAdmissionError (an Allocate error)", r.Reason)
	}
	for _, want := range []string{"Allocate failed due to", gpuRes, "failRequestsGreaterThanOne"} {
		if !strings.Contains(r.Message, want) {
			t.Errorf("message %q does not contain %q", r.Message, want)
		}
	}
	// One replica per pod is fine, and the rejected pod holds nothing: all 8 can be taken.
	for i := 0; i < 8; i++ {
		n.k.mustAdmit(gpuPod(fmt.Sprintf("one-%d", i), gpuRes, 1))
	}
}

// ---------------------------------------------------------------------------------------------
// 4. The plugin's preferred allocation is what the kubelet picks.

func TestPreferredAllocationPacks(t *testing.T) {
	n := startNode(t, fakeGPUs(4), timeSlicing(4, false), map[string]int64{gpuRes: 16})
	n.k.mustAdmit(gpuPod("one", gpuRes, 1))
	// 7 pairs fit on 4 GPUs x 4 with one replica taken only if every pair sits on one GPU. Without
	// the plugin's preference the kubelet takes any 2 free replicas, and 7 pairs in a row landing
	// on one GPU each by chance is well under 1%.
	for i := 0; i < 7; i++ {
		pod := gpuPod(fmt.Sprintf("two-%d", i), gpuRes, 2)
		n.k.mustAdmit(pod)
		ids := n.k.devicesOf(pod, "app", gpuRes)
		if held := byGPU(t, ids); len(held) != 1 {
			t.Errorf("pod %s: 2 replicas %v on %d GPUs, want both on one GPU", pod.Name, ids,
				len(held))
		}
	}
}

// ---------------------------------------------------------------------------------------------
// 5. XID health.

func TestXIDLowersAllocatable(t *testing.T) {
	gpus := fakeGPUs(2)
	n := startNode(t, gpus, timeSlicing(4, false), map[string]int64{gpuRes: 8})
	// An application XID on GPU 1 is ignored; the critical one on GPU 0, appended after it, takes
	// GPU 0's 4 replicas out.
	n.p.event("xid " + gpus[1].uuid + " 13")
	n.p.event("xid " + gpus[0].uuid + " 79")
	n.k.waitResource(n.p, gpuRes, 8, 4)
	if got, want := sortedIDs(n.k.healthyDevices(gpuRes)), replicaIDs(gpus[1], 4); !equalSets(got, want) {
		t.Errorf("healthy devices %v, want GPU 1's %v", got, want)
	}
	// The kubelet will not place 5 replicas on 4 healthy ones.
	if r := n.k.admitPod(gpuPod("five", gpuRes, 5)); r.Admit {
		t.Errorf("5-replica pod admitted with 4 healthy replicas")
	} else {
		t.Logf("5 replicas with GPU 0 down: reason=%q message=%q", r.Reason, r.Message)
	}
	n.p.event("recover " + gpus[0].uuid)
	n.k.waitResource(n.p, gpuRes, 8, 8)
	n.k.mustAdmit(gpuPod("five-again", gpuRes, 5))
}

// ---------------------------------------------------------------------------------------------
// 6. Kubelet restart.

func TestKubeletRestart(t *testing.T) {
	gpus := fakeGPUs(2)
	n := startNode(t, gpus, timeSlicing(4, false), map[string]int64{gpuRes: 8}, arbiterFlag(t)...)
	pod := gpuPod("before", gpuRes, 2)
	n.k.mustAdmit(pod)
	before := n.k.devicesOf(pod, "app", gpuRes)
	optsBefore := n.k.runOptions(pod, "app")
	checkArbiter(t, n.p, optsBefore, before)
	pid := n.p.pid()
	node := n.k.node.DeepCopy()

	// The kubelet goes away and a new one starts on the same directory: it reads its checkpoint,
	// finds the pod's container running, and waits for its sources.
	n.k.stop()
	cm := containermap.NewContainerMap()
	cm.Add(string(pod.UID), "app", "cid-before")
	k2 := newKubeletWith(t, n.k.dir, kubeletOptions{pods: []*v1.Pod{pod}, containers: cm,
		runningContainers: sets.New("cid-before"), sourcesNotReady: true, node: node})
	if got := k2.devicesOf(pod, "app", gpuRes); !equalSets(got, before) {
		t.Errorf("checkpointed devices %v, want %v", got, before)
	}
	// The plugin notices the new kubelet.sock and registers again on its own.
	k2.waitResource(n.p, gpuRes, 8, 8)
	if n.p.pid() != pid {
		t.Errorf("plugin process changed")
	}
	healthy := k2.healthyDevices(gpuRes)
	for _, id := range before {
		if _, ok := healthy[id]; !ok {
			t.Errorf("allocated device %s is not among the re-registered plugin's healthy ones %v",
				id, sortedIDs(healthy))
		}
	}
	// The kubelet re-admits its running pod: same devices, no new allocation.
	k2.mustAdmit(pod)
	k2.sources.ready.Store(true)
	if got := k2.devicesOf(pod, "app", gpuRes); !equalSets(got, before) {
		t.Errorf("after re-admission devices %v, want %v", got, before)
	}
	optsAfter := k2.runOptions(pod, "app")
	checkArbiter(t, n.p, optsAfter, before)
	// Envs come from a map in the Allocate response: compare them as sets, in any order.
	if a, b := sortedLines(describeOptions(optsBefore)), sortedLines(describeOptions(optsAfter)); a != b {
		t.Errorf("run options changed across the kubelet restart:\nbefore\n%safter\n%s", a, b)
	}
	// The allocation still counts: 6 replicas are free, and they are exactly the others.
	other := gpuPod("after", gpuRes, 6)
	k2.mustAdmit(other)
	got := k2.devicesOf(other, "app", gpuRes)
	if sets.New(got...).HasAny(before...) {
		t.Errorf("new pod got %v, overlapping the running pod's %v", got, before)
	}
	if r := k2.admitPod(gpuPod("too-many", gpuRes, 1)); r.Admit {
		t.Errorf("a 9th replica was admitted")
	}
}

// ---------------------------------------------------------------------------------------------
// 7. Plugin restart.

func TestPluginRestart(t *testing.T) {
	n := startNode(t, fakeGPUs(2), timeSlicing(4, false), map[string]int64{gpuRes: 8})
	pod := gpuPod("before", gpuRes, 3)
	n.k.mustAdmit(pod)
	before := n.k.devicesOf(pod, "app", gpuRes)

	if err := n.p.terminate(10 * time.Second); err != nil {
		t.Errorf("plugin exit on SIGTERM: %v (want status 0)", err)
	}
	if socks := n.p.sockets(); len(socks) != 0 {
		t.Errorf("sockets left after SIGTERM: %v", socks)
	}
	// The kubelet marks the resource's devices unhealthy; capacity stays for its grace period.
	n.k.waitResource(nil, gpuRes, 8, 0)

	n.p.start()
	n.k.waitResource(n.p, gpuRes, 8, 8)
	healthy := n.k.healthyDevices(gpuRes)
	for _, id := range before {
		if _, ok := healthy[id]; !ok {
			t.Errorf("allocated device %s is not among the restarted plugin's %v", id,
				sortedIDs(healthy))
		}
	}
	other := gpuPod("after", gpuRes, 5)
	n.k.mustAdmit(other)
	if got := n.k.devicesOf(other, "app", gpuRes); sets.New(got...).HasAny(before...) {
		t.Errorf("new pod got %v, overlapping the running pod's %v", got, before)
	}
	_ = n.k.runOptions(other, "app")
}

// ---------------------------------------------------------------------------------------------
// 8. Two resources from one plugin process.

func TestTwoResources(t *testing.T) {
	gpus := fakeGPUs(3)
	config := `version: v1
sharing:
  timeSlicing:
    resources:
      - name: nvidia.com/gpu
        rename: nvidia.com/gpu.shared
        replicas: 4
        devices: [0, 1]
`
	n := startNode(t, gpus, config, map[string]int64{sharedRes: 8, gpuRes: 1}, arbiterFlag(t)...)
	pod := newPod("mixed",
		container{name: "shared", limits: map[string]int64{sharedRes: 2}},
		container{name: "whole", limits: map[string]int64{gpuRes: 1}})
	n.k.mustAdmit(pod)

	shared := n.k.devicesOf(pod, "shared", sharedRes)
	held := byGPU(t, shared)
	if len(shared) != 2 || len(held) != 1 || keys(held)[0] == gpus[2].uuid {
		t.Errorf("shared container got %v, want 2 replicas of one of GPUs 0, 1", shared)
	}
	whole := n.k.devicesOf(pod, "whole", gpuRes)
	if !equalSets(whole, []string{gpus[2].uuid}) {
		t.Errorf("whole container got %v, want [%s]", whole, gpus[2].uuid)
	}
	so, wo := n.k.runOptions(pod, "shared"), n.k.runOptions(pod, "whole")
	t.Logf("shared container:\n%swhole container:\n%s", describeOptions(so), describeOptions(wo))
	if got := envMap(so)[visibleDevices]; len(held) == 1 && got != keys(held)[0] {
		t.Errorf("shared container %s=%q, want %q", visibleDevices, got, keys(held)[0])
	}
	if got := envMap(wo)[visibleDevices]; got != gpus[2].uuid {
		t.Errorf("whole container %s=%q, want %q", visibleDevices, got, gpus[2].uuid)
	}
	checkShim(t, n.p, gpus, so, held, 4)
	if v, ok := envMap(wo)[memoryLimitsEnv]; ok {
		t.Errorf("whole GPU container has %s=%q: replicas 1 is not shared", memoryLimitsEnv, v)
	}
	checkArbiter(t, n.p, so, shared)
	checkNoArbiter(t, wo)
	// Both resources keep working side by side: the rest of each can be taken.
	n.k.mustAdmit(gpuPod("rest-shared", sharedRes, 6))
	if r := n.k.admitPod(gpuPod("no-more-whole", gpuRes, 1)); r.Admit {
		t.Errorf("a second whole GPU was admitted; there is one")
	}
}
