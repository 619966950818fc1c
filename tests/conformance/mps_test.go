package conformance

// MPS (issue 14) under the upstream kubelet device manager: the plugin with a sharing.mps config
// and the real `slicer mps-daemon` over the fake nvidia-cuda-mps-control (build/fakes/bin) and
// the fake NVML. The kubelet sees the replicas but cannot allocate them until the GPU's daemon is
// ready; an admitted container gets its GPU's pipe folder, the daemons' shared memory and the
// sizing of the replicas it holds; a crashed daemon takes that GPU's replicas out of allocatable
// until it is back.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const mpsConfig = `version: v1
sharing:
  mps:
    failRequestsGreaterThanOne: false
    resources:
      - name: nvidia.com/gpu
        replicas: 4
`

// startMpsDaemon runs `slicer mps-daemon` on `root` over the plugin's fake machine; stopped (and
// its fake control daemons with it) when the test ends.
func startMpsDaemon(t *testing.T, p *slicerPlugin, root string) {
	t.Helper()
	bin, fakes := slicerBinary(t)
	log, err := os.Create(filepath.Join(p.work, "mps-daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "mps-daemon", "--mps-root="+root, "--tick=50")
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Join(fakes, "bin")+":/usr/bin:/bin",
		"LD_LIBRARY_PATH="+fakes,
		"SLICER_FAKE_NVML="+filepath.Join(p.work, "machine.yaml"),
	)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mps-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // quits the control daemons, restores the modes
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		log.Close()
		if t.Failed() {
			data, _ := os.ReadFile(log.Name())
			t.Logf("mps-daemon log:\n%s", data)
		}
	})
}

func TestMpsReplicasAreAllocatableOnceTheirDaemonIsReady(t *testing.T) {
	gpus := fakeGPUs(2)
	// A short root: a GPU's control socket (<root>/<uuid>/pipe/control) must fit 107 bytes.
	root, err := os.MkdirTemp("/tmp", "mps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	dir := socketDir(t)
	k := newKubelet(t, dir)
	p := newSlicerPlugin(t, dir, gpus, mpsConfig, "--mps-root", root)
	p.start()

	// Advertised, but nothing allocatable before a daemon answers: a pod is not admitted.
	k.waitResource(p, gpuRes, 8, 0)
	if r := k.admitPod(gpuPod("early", gpuRes, 1)); r.Admit {
		t.Errorf("a pod was admitted onto MPS replicas whose daemon is not running")
	}

	startMpsDaemon(t, p, root)
	k.waitResource(p, gpuRes, 8, 8)

	pod := gpuPod("app", gpuRes, 2)
	k.mustAdmit(pod)
	ids := k.devicesOf(pod, "app", gpuRes)
	held := byGPU(t, ids)
	if len(held) != 1 {
		t.Fatalf("the kubelet placed the 2 MPS replicas %v on %d GPUs; an MPS client talks to one "+
			"GPU's daemon (GetPreferredAllocation packs)", ids, len(held))
	}
	var uuid string
	for u := range held {
		uuid = u
	}
	opts := k.runOptions(pod, "app")
	t.Logf("devices %v; run options:\n%s", ids, describeOptions(opts))
	env := envMap(opts)
	for name, want := range map[string]string{
		"CUDA_MPS_PIPE_DIRECTORY":           "/mps/" + uuid + "/pipe",
		"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50",
		"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT":  fmt.Sprintf("0=%dM", 15360/2),
		visibleDevices:                      uuid,
		memoryLimitsEnv:                     fmt.Sprintf("%s=%d", uuid, int64(15360)*mib/2),
	} {
		if env[name] != want {
			t.Errorf("%s=%q, want %q", name, env[name], want)
		}
	}
	mounts := map[string]string{}
	for _, m := range opts.Mounts {
		mounts[m.ContainerPath] = m.HostPath
	}
	if got, want := mounts["/mps/"+uuid+"/pipe"], filepath.Join(root, uuid, "pipe"); got != want {
		t.Errorf("pipe folder mounted from %q, want %q (mounts %v)", got, want, mounts)
	}
	if got, want := mounts["/dev/shm"], filepath.Join(root, "shm"); got != want {
		t.Errorf("/dev/shm mounted from %q, want %q", got, want)
	}

	// That GPU's daemon dies: its 4 replicas leave allocatable until the restarted one answers.
	pidText, err := os.ReadFile(filepath.Join(root, uuid, "pipe", "nvidia-cuda-mps-control.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}
	proc, _ := os.FindProcess(pid)
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	k.waitResource(p, gpuRes, 8, 4)
	k.waitResource(p, gpuRes, 8, 8)
}
