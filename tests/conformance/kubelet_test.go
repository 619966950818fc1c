package conformance

// The kubelet side of the conformance tests: the upstream device manager
// (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager) wired the way kubelet.go and
// cm/container_manager_linux.go wire it, with nothing re-implemented here:
//
//   - admission is the kubelet's own chain, in the kubelet's order: the topology manager's admit
//     handler (which calls the device manager's Allocate as a hint provider, policy "none", scope
//     "container": the kubelet defaults), then lifecycle.NewPredicateAdmitHandler with the device
//     manager's UpdatePluginResources (node fit, "OutOf<resource>" rejections);
//   - the node's capacity and allocatable come from the kubelet's node status setter
//     (nodestatus.MachineInfo) fed by the device manager's GetCapacity, on a Node object that
//     outlives a kubelet restart just as the API server's copy does;
//   - the container's runtime settings come from GetDeviceRunContainerOptions, which is what
//     kuberuntime's generateRunContainerOptions calls.

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "unsafe" // go:linkname

	cadvisorapi "github.com/google/cadvisor/lib/model"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
	"k8s.io/kubernetes/pkg/kubelet/nodestatus"
)

// newManagerImpl is the upstream constructor that takes the registration socket path.
// devicemanager.NewManagerImpl is exactly newManagerImpl(logger, pluginapi.KubeletSocket, ...),
// that is, with the node's fixed /var/lib/kubelet/device-plugins/kubelet.sock; the upstream
// package's own tests call newManagerImpl with a temporary directory, and so do we, so that these
// tests never touch the host's kubelet directory and can run side by side.
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(logger klog.Logger, socketPath string, topology []cadvisorapi.Node,
	topologyAffinityStore topologymanager.Store) (*devicemanager.ManagerImpl, error)

// One NUMA node, as on the simulated machines (every fake GPU sits on NUMA node 0).
var machineTopology = []cadvisorapi.Node{{Id: 0}}

// sourcesReady is the kubelet's config.SourcesReady: false while a restarted kubelet has not yet
// heard from all its pod sources, which is what makes the device manager trust running
// containers' allocations from its checkpoint.
type sourcesReady struct{ ready atomic.Bool }

func (s *sourcesReady) AddSource(string) {}
func (s *sourcesReady) AllReady() bool   { return s.ready.Load() }

// kubelet is the part of a kubelet that the device manager lives in.
type kubelet struct {
	t       *testing.T
	dir     string // the device-plugins directory: kubelet.sock, plugin sockets, checkpoint
	dm      *devicemanager.ManagerImpl
	tm      topologymanager.Manager
	admit   []lifecycle.PodAdmitHandler
	sources *sourcesReady
	node    *v1.Node
	status  nodestatus.Setter

	mu      sync.Mutex
	pods    []*v1.Pod // active pods (admitted and not deleted)
	stopped bool
}

// kubeletOptions describe what a restarted kubelet finds: the pods it runs, the containers the
// runtime reports, and the Node object from the API server.
type kubeletOptions struct {
	pods              []*v1.Pod
	containers        containermap.ContainerMap
	runningContainers sets.Set[string]
	sourcesNotReady   bool
	node              *v1.Node
}

func newKubelet(t *testing.T, dir string) *kubelet {
	return newKubeletWith(t, dir, kubeletOptions{})
}

func newKubeletWith(t *testing.T, dir string, o kubeletOptions) *kubelet {
	t.Helper()
	logger := klog.Background()
	tm, err := topologymanager.NewManager(logger, machineTopology, "none", "container", nil)
	if err != nil {
		t.Fatalf("topologymanager.NewManager: %v", err)
	}
	dm, err := newManagerImpl(logger, filepath.Join(dir, "kubelet.sock"), machineTopology, tm)
	if err != nil {
		t.Fatalf("devicemanager newManagerImpl: %v", err)
	}
	tm.AddHintProvider(logger, dm)
	k := &kubelet{t: t, dir: dir, dm: dm, tm: tm, sources: &sourcesReady{}, pods: o.pods}
	k.sources.ready.Store(!o.sourcesNotReady)
	k.admit = []lifecycle.PodAdmitHandler{
		tm, // cm.GetAllocateResourcesPodAdmitHandler() on Linux is the topology manager
		lifecycle.NewPredicateAdmitHandler(k.getNode, lifecycle.NewAdmissionFailureHandlerStub(),
			dm.UpdatePluginResources),
	}
	k.node = o.node
	if k.node == nil {
		k.node = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "conformance-node",
			Labels: map[string]string{v1.LabelOSStable: "linux"}}}
	}
	k.status = nodestatus.MachineInfo("conformance-node", 110, 0,
		func() (*cadvisorapi.MachineInfo, error) {
			return &cadvisorapi.MachineInfo{NumCores: 16, MemoryCapacity: 64 << 30,
				MachineID: "conformance", SystemUUID: "conformance", BootID: "boot"}, nil
		},
		func(klog.Logger, bool) v1.ResourceList { return nil },
		dm.GetCapacity,
		func() v1.ResourceList { return nil },
		func(string, string, string) {},
		func() *bool { return nil },
		false)
	containers := o.containers
	if containers == nil {
		containers = containermap.NewContainerMap()
	}
	running := o.runningContainers
	if running == nil {
		running = sets.New[string]()
	}
	if err := dm.Start(logger, k.activePods, k.sources, containers, running); err != nil {
		t.Fatalf("device manager Start: %v", err)
	}
	t.Cleanup(k.stop)
	return k
}

func (k *kubelet) activePods() []*v1.Pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*v1.Pod(nil), k.pods...)
}

// stop stops the device manager (the kubelet going away): its registration socket is removed
// and its plugin connections are closed. Safe to call twice.
func (k *kubelet) stop() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.stopped = true
	k.mu.Unlock()
	if err := k.dm.Stop(klog.Background()); err != nil {
		k.t.Errorf("device manager Stop: %v", err)
	}
}

// getNode runs the kubelet's node status setter against the device manager and returns the Node.
func (k *kubelet) getNode(ctx context.Context, _ bool) (*v1.Node, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.status(ctx, k.node); err != nil {
		return nil, err
	}
	return k.node.DeepCopy(), nil
}

// resources returns the node's capacity and allocatable of one resource, as the kubelet reports
// them in node status (-1: absent).
func (k *kubelet) resources(name string) (capacity, allocatable int64) {
	node, err := k.getNode(context.Background(), false)
	if err != nil {
		k.t.Fatalf("node status: %v", err)
	}
	capacity, allocatable = -1, -1
	if q, ok := node.Status.Capacity[v1.ResourceName(name)]; ok {
		capacity = q.Value()
	}
	if q, ok := node.Status.Allocatable[v1.ResourceName(name)]; ok {
		allocatable = q.Value()
	}
	return capacity, allocatable
}

// admitPod runs the kubelet's admission chain as HandlePodAdditions does: the pod is in the pod
// manager (so active) while it is admitted, and the other pods are the active ones; a rejected pod
// is marked Failed, which makes it inactive.
func (k *kubelet) admitPod(pod *v1.Pod) lifecycle.PodAdmitResult {
	ctx := context.Background()
	k.mu.Lock()
	known := false
	for _, p := range k.pods {
		known = known || p.UID == pod.UID
	}
	if !known {
		k.pods = append(k.pods, pod)
	}
	k.mu.Unlock()
	attrs := &lifecycle.PodAdmitAttributes{Pod: pod, OtherPods: k.otherPods(pod),
		Operation: lifecycle.AddOperation}
	for _, h := range k.admit {
		if r := h.Admit(ctx, attrs); !r.Admit {
			k.deletePod(pod)
			return r
		}
	}
	return lifecycle.PodAdmitResult{Admit: true}
}

func (k *kubelet) otherPods(pod *v1.Pod) []*v1.Pod {
	var out []*v1.Pod
	for _, p := range k.activePods() {
		if p.UID != pod.UID {
			out = append(out, p)
		}
	}
	return out
}

// mustAdmit admits the pod or fails the test with the kubelet's reason.
func (k *kubelet) mustAdmit(pod *v1.Pod) {
	k.t.Helper()
	if r := k.admitPod(pod); !r.Admit {
		k.t.Fatalf("kubelet rejected pod %s: reason=%q message=%q", pod.Name, r.Reason, r.Message)
	}
}

// deletePod makes the pod inactive; the device manager frees its devices on its next allocation.
func (k *kubelet) deletePod(pod *v1.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, p := range k.pods {
		if p.UID == pod.UID {
			k.pods = append(k.pods[:i], k.pods[i+1:]...)
			return
		}
	}
}

// runOptions is what the kubelet hands the container runtime for this container.
func (k *kubelet) runOptions(pod *v1.Pod, container string) *devicemanager.DeviceRunContainerOptions {
	k.t.Helper()
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == container {
			opts, err := k.dm.GetDeviceRunContainerOptions(context.Background(), pod,
				&pod.Spec.Containers[i])
			if err != nil {
				k.t.Fatalf("GetDeviceRunContainerOptions(%s/%s): %v", pod.Name, container, err)
			}
			if opts == nil {
				k.t.Fatalf("GetDeviceRunContainerOptions(%s/%s): no options", pod.Name, container)
			}
			return opts
		}
	}
	k.t.Fatalf("pod %s has no container %s", pod.Name, container)
	return nil
}

// devicesOf returns the device IDs of one resource that the kubelet assigned to a container.
func (k *kubelet) devicesOf(pod *v1.Pod, container, res string) []string {
	var ids []string
	for id := range k.dm.GetDevices(string(pod.UID), container)[res] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// healthyDevices returns the IDs the kubelet holds as healthy for a resource, with their
// pluginapi.Device records.
func (k *kubelet) healthyDevices(res string) map[string]*pluginapi.Device {
	return k.dm.GetAllocatableDevices(klog.Background())[res]
}

// waitResource waits until node status shows the wanted capacity and allocatable.
func (k *kubelet) waitResource(p *slicerPlugin, name string, capacity, allocatable int64) {
	k.t.Helper()
	var c, a int64
	eventually(k.t, p, 20*time.Second, func() bool {
		c, a = k.resources(name)
		return c == capacity && a == allocatable
	}, func() string {
		return fmt.Sprintf("node status %s: capacity=%d allocatable=%d, want capacity=%d "+
			"allocatable=%d (-1: absent)", name, c, a, capacity, allocatable)
	})
}

// eventually polls cond until it holds, failing with what() after the timeout, or at once (with
// the plugin's log) when the plugin process has exited.
func eventually(t *testing.T, p *slicerPlugin, timeout time.Duration, cond func() bool,
	what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if p != nil && p.exited() {
			t.Fatalf("%s; the plugin exited: %s", what(), p.exitStatus())
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var podSeq atomic.Int64

// container is one container of a test pod and its device-plugin resource limits.
type container struct {
	name   string
	limits map[string]int64
}

func newPod(name string, containers ...container) *v1.Pod {
	n := podSeq.Add(1)
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			UID: types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", n))},
	}
	for _, c := range containers {
		rl := v1.ResourceList{}
		for r, q := range c.limits {
			rl[v1.ResourceName(r)] = *resource.NewQuantity(q, resource.DecimalSI)
		}
		pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{Name: c.name,
			Image: "app", Resources: v1.ResourceRequirements{Limits: rl, Requests: rl}})
	}
	return pod
}

// gpuPod is a pod with one container "app" asking for n of one resource.
func gpuPod(name, res string, n int64) *v1.Pod {
	return newPod(name, container{name: "app", limits: map[string]int64{res: n}})
}

func envMap(opts *devicemanager.DeviceRunContainerOptions) map[string]string {
	m := map[string]string{}
	for _, e := range opts.Envs {
		m[e.Name] = e.Value
	}
	return m
}

func describeOptions(opts *devicemanager.DeviceRunContainerOptions) string {
	var b strings.Builder
	for _, e := range opts.Envs {
		fmt.Fprintf(&b, "  env %s=%s\n", e.Name, e.Value)
	}
	for _, m := range opts.Mounts {
		fmt.Fprintf(&b, "  mount %s -> %s ro=%v\n", m.HostPath, m.ContainerPath, m.ReadOnly)
	}
	for _, d := range opts.Devices {
		fmt.Fprintf(&b, "  device %s -> %s %s\n", d.PathOnHost, d.PathInContainer, d.Permissions)
	}
	for _, a := range opts.Annotations {
		fmt.Fprintf(&b, "  annotation %s=%s\n", a.Name, a.Value)
	}
	for _, c := range opts.CDIDevices {
		fmt.Fprintf(&b, "  cdi %s\n", c.Name)
	}
	return b.String()
}
