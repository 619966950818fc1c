package conformance

import (
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReload: a changed config applied on SIGHUP reaches the kubelet; a bad one leaves the
// running config (and so the node's capacity) in force.
func TestSIGHUPReload(t *testing.T) {
	gpus := fakeGPUs(2)
	n := startNode(t, gpus, timeSlicing(4, false), map[string]int64{gpuRes: 8})

	writeFile(t, n.p.configFile, "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"+
		"      - name: nvidia.com/gpu\n        replicas: 4\n        bogusKey: 1\n")
	n.p.signal(syscall.SIGHUP)
	time.Sleep(time.Second)
	if c, a := n.k.resources(gpuRes); c != 8 || a != 8 {
		t.Errorf("after SIGHUP with a bad config: capacity %d allocatable %d, want 8 8 (the running "+
			"config stays in force)", c, a)
	}

	writeFile(t, n.p.configFile, timeSlicing(2, false))
	n.p.signal(syscall.SIGHUP)
	n.k.waitResource(n.p, gpuRes, 4, 4)
	got := sortedIDs(n.k.healthyDevices(gpuRes))
	if want := append(replicaIDs(gpus[0], 2), replicaIDs(gpus[1], 2)...); !equalSets(got, want) {
		t.Errorf("after reload to 2 replicas: devices %v, want %v", got, want)
	}
	n.k.mustAdmit(gpuPod("after-reload", gpuRes, 2))
}
