package conformance

// The plugin side: the real `slicer device-plugin` binary on the fake NVML (DESIGN.md, "Test
// doubles"). SLICER_BIN names the binary and SLICER_FAKES_DIR the folder holding the fake
// libnvidia-ml.so.1 (run.sh sets both).

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gpu is one simulated GPU of the fake machine file.
type gpu struct {
	uuid      string
	name      string
	memoryMiB int
	minor     int
}

// fakeGPUs returns n distinct T4s: GPU-11111111-..., GPU-22222222-..., minor numbers 0..n-1.
func fakeGPUs(n int) []gpu {
	var out []gpu
	for i := 0; i < n; i++ {
		d := fmt.Sprintf("%d", i+1)
		out = append(out, gpu{
			uuid: fmt.Sprintf("GPU-%s-%s-%s-%s-%s", strings.Repeat(d, 8), strings.Repeat(d, 4),
				strings.Repeat(d, 4), strings.Repeat(d, 4), strings.Repeat(d, 12)),
			name: "Tesla T4", memoryMiB: 15360, minor: i,
		})
	}
	return out
}

// slicerPlugin is one `slicer device-plugin` process and the files it reads.
type slicerPlugin struct {
	t          *testing.T
	socketDir  string // directory of kubelet.sock (and so of the plugin's sockets)
	work       string
	gpus       []gpu
	configFile string
	eventsFile string
	shimDir    string   // host folder holding libslicer.so (a placeholder: nothing loads it here)
	args       []string // extra flags
	// arbiterSocket is the value of --arbiter-socket in args ("" without it): its directory is
	// what Allocate mounts into shared containers.
	arbiterSocket string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	logPath  string
	starts   int
	shutdown bool
}

func slicerBinary(t *testing.T) (bin, fakes string) {
	t.Helper()
	bin, fakes = os.Getenv("SLICER_BIN"), os.Getenv("SLICER_FAKES_DIR")
	if bin == "" || fakes == "" {
		t.Fatalf("SLICER_BIN and SLICER_FAKES_DIR must name the slicer binary and the folder of "+
			"the fake libnvidia-ml.so.1 (got %q, %q); run tests/conformance/run.sh", bin, fakes)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("SLICER_BIN: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fakes, "libnvidia-ml.so.1")); err != nil {
		t.Fatalf("SLICER_FAKES_DIR: %v", err)
	}
	return bin, fakes
}

// newSlicerPlugin writes the machine, events and config files; start() runs the process.
func newSlicerPlugin(t *testing.T, socketDir string, gpus []gpu, config string,
	args ...string) *slicerPlugin {
	t.Helper()
	p := &slicerPlugin{t: t, socketDir: socketDir, work: t.TempDir(), gpus: gpus, args: args}
	for i, a := range args {
		if a == "--arbiter-socket" && i+1 < len(args) {
			p.arbiterSocket = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--arbiter-socket="); ok {
			p.arbiterSocket = v
		}
	}
	var m strings.Builder
	m.WriteString("driverVersion: \"580.159.04\"\ndevices:\n")
	for _, g := range gpus {
		fmt.Fprintf(&m, "  - {uuid: %s, name: %s, memoryMiB: %d, numaNode: 0, minorNumber: %d}\n",
			g.uuid, g.name, g.memoryMiB, g.minor)
	}
	writeFile(t, filepath.Join(p.work, "machine.yaml"), m.String())
	p.eventsFile = filepath.Join(p.work, "events.txt")
	writeFile(t, p.eventsFile, "")
	p.configFile = filepath.Join(p.work, "config.yaml")
	writeFile(t, p.configFile, config)
	// Shared resources cap memory by default, and the plugin refuses capped allocations when the
	// shim is not installed (fail closed): install a placeholder.
	p.shimDir = filepath.Join(p.work, "shim")
	if err := os.Mkdir(p.shimDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(p.shimDir, "libslicer.so"), "")
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.dumpLogs()
		}
	})
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs a new plugin process (the previous one, if any, must have been stopped).
func (p *slicerPlugin) start() {
	p.t.Helper()
	bin, fakes := slicerBinary(p.t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		p.t.Fatalf("plugin already running")
	}
	p.starts++
	p.logPath = filepath.Join(p.work, fmt.Sprintf("plugin-%d.log", p.starts))
	logf, err := os.Create(p.logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	args := append([]string{"device-plugin",
		"--config-file", p.configFile,
		"--kubelet-socket", filepath.Join(p.socketDir, "kubelet.sock"),
		"--feature-file", "",
		"--health-probe-interval", "100ms",
		"--health-recovery-delay", "0s",
		"--shim-dir", p.shimDir,
	}, p.args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"LD_LIBRARY_PATH="+fakes,
		"SLICER_FAKE_NVML="+filepath.Join(p.work, "machine.yaml"),
		"SLICER_FAKE_NVML_EVENTS="+p.eventsFile,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start %s: %v", bin, err)
	}
	p.t.Logf("plugin #%d: pid %d: %s %s", p.starts, cmd.Process.Pid, bin, strings.Join(args, " "))
	done := make(chan struct{})
	p.cmd, p.done, p.waitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
}

func (p *slicerPlugin) exitedLocked() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exited says whether the current process has exited (not counting a stop() we asked for).
func (p *slicerPlugin) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.shutdown && p.exitedLocked()
}

func (p *slicerPlugin) exitStatus() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%v; log tail:\n%s", p.waitErr, tail(p.logPath, 30))
}

func (p *slicerPlugin) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// terminate sends SIGTERM and waits for the exit; it returns the process's exit error.
func (p *slicerPlugin) terminate(timeout time.Duration) error {
	p.t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.shutdown = true
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		p.mu.Lock()
		p.shutdown = false
		p.mu.Unlock()
		return fmt.Errorf("plugin did not exit within %v of SIGTERM (killed)", timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shutdown = false
	return p.waitErr
}

// stop ends the process if it runs (cleanup).
func (p *slicerPlugin) stop() {
	p.mu.Lock()
	running := p.cmd != nil && !p.exitedLocked()
	p.mu.Unlock()
	if running {
		if err := p.terminate(5 * time.Second); err != nil {
			p.t.Logf("plugin stop: %v", err)
		}
	}
}

// signal sends a signal to the running process.
func (p *slicerPlugin) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// event appends one line to the fake NVML's event file ("xid <uuid> <code>", "recover <uuid>").
func (p *slicerPlugin) event(line string) {
	p.t.Helper()
	f, err := os.OpenFile(p.eventsFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("fake NVML event: %s", line)
}

// sockets lists the socket files in the device-plugins directory other than kubelet.sock.
func (p *slicerPlugin) sockets() []string {
	entries, err := os.ReadDir(p.socketDir)
	if err != nil {
		p.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Type()&os.ModeSocket != 0 && e.Name() != "kubelet.sock" {
			out = append(out, e.Name())
		}
	}
	return out
}

func (p *slicerPlugin) dumpLogs() {
	for i := 1; i <= p.starts; i++ {
		path := filepath.Join(p.work, fmt.Sprintf("plugin-%d.log", i))
		p.t.Logf("plugin #%d log (%s):\n%s", i, path, tail(path, 60))
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// socketDir makes a short directory for the unix sockets (sun_path holds 108 bytes, and test
// temp dirs carry the test's name).
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "slc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// arbiterFlag returns the --arbiter-socket flag for a socket in a fresh short directory (as
// `slicer arbiter --socket` would create it; nothing listens there: Allocate only hands out the
// path, and the shim connects to it inside the container).
func arbiterFlag(t *testing.T) []string {
	t.Helper()
	dir, err := os.MkdirTemp("", "slcarb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return []string{"--arbiter-socket", filepath.Join(dir, "arbiter.sock")}
}

// timeSlicing is a v1 config with one shared resource.
func timeSlicing(replicas int, failRequestsGreaterThanOne bool) string {
	return fmt.Sprintf(`version: v1
sharing:
  timeSlicing:
    failRequestsGreaterThanOne: %v
    resources:
      - name: nvidia.com/gpu
        replicas: %d
`, failRequestsGreaterThanOne, replicas)
}

// node is a kubelet and a running plugin on one simulated node.
type node struct {
	k *kubelet
	p *slicerPlugin
}

// startNode starts a kubelet, then the plugin, and waits until every resource in want is
// registered with its capacity (= allocatable).
func startNode(t *testing.T, gpus []gpu, config string, want map[string]int64,
	args ...string) *node {
	t.Helper()
	dir := socketDir(t)
	k := newKubelet(t, dir)
	p := newSlicerPlugin(t, dir, gpus, config, args...)
	p.start()
	for res, n := range want {
		k.waitResource(p, res, n, n)
	}
	return &node{k: k, p: p}
}
