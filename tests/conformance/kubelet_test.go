package conformance

import (
	"path/filepath"
	"testing"
	_ "unsafe" // go:linkname

	cadvisorapi "github.com/google/cadvisor/lib/model"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
)

// newManagerImpl is the upstream constructor that takes the registration socket path.
// devicemanager.NewManagerImpl is exactly newManagerImpl(logger, pluginapi.KubeletSocket, ...)
// with the node's fixed /var/lib/kubelet/device-plugins path; the upstream package's own tests
// call newManagerImpl with a temporary directory, and so do we, so that tests never touch the
// host's kubelet directory and can run side by side.
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(logger klog.Logger, socketPath string, topology []cadvisorapi.Node,
	topologyAffinityStore topologymanager.Store) (*devicemanager.ManagerImpl, error)

type sourcesReady struct{}

func (sourcesReady) AddSource(string) {}
func (sourcesReady) AllReady() bool   { return true }

// kubelet is the slice of a kubelet that the device manager lives in.
type kubelet struct {
	t    *testing.T
	dir  string
	mgr  *devicemanager.ManagerImpl
	pods []*v1.Pod
}

func newKubelet(t *testing.T, dir string) *kubelet {
	t.Helper()
	logger := klog.Background()
	topo := []cadvisorapi.Node{{Id: 0}}
	mgr, err := newManagerImpl(logger, filepath.Join(dir, "kubelet.sock"), topo, nil)
	if err != nil {
		t.Fatalf("newManagerImpl: %v", err)
	}
	k := &kubelet{t: t, dir: dir, mgr: mgr}
	err = mgr.Start(logger, func() []*v1.Pod { return k.pods }, sourcesReady{},
		containermap.NewContainerMap(), sets.New[string]())
	if err != nil {
		t.Fatalf("device manager Start: %v", err)
	}
	return k
}

func (k *kubelet) stop() {
	if err := k.mgr.Stop(klog.Background()); err != nil {
		k.t.Errorf("device manager Stop: %v", err)
	}
}
