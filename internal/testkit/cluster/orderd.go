package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles cmd/orderd into dir and returns the binary's path. It uses
// the normal Go build cache, so only the first build on a machine is slow.
// The binary is built without the race detector (it is the system under
// test, not the test) and with `-tags failpoints`, so that an instance
// started with FLASHORDER_FAILPOINTS in Options.Env pauses where a scenario
// needs it to (see internal/failpoint); without that variable it behaves as
// the normal build.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "orderd")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "failpoints", "-o", bin, "github.com/flashorder/flashorder/cmd/orderd")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("cluster: go build cmd/orderd: %w\n%s", err, out.Bytes())
	}
	return bin, nil
}

// Options configures a Cluster.
type Options struct {
	// Binary is the orderd binary (see Build).
	Binary string
	// N is the number of instances; the default is 3.
	N int
	// Args are the flags every instance gets; the harness adds --listen and
	// --admin-token.
	Args []string
	// InstanceArgs holds extra flags by instance index, after Args: a flag
	// given in both takes the instance's value (e.g. a --db through a proxy).
	InstanceArgs map[int][]string
	// Env holds extra environment variables (NAME=value) by instance
	// index, on top of the test's own environment.
	Env map[int][]string
	// AdminToken is the admin bearer token; the default is "faults".
	AdminToken string
	// ReadyTimeout bounds each wait for /readyz; the default is 60s.
	ReadyTimeout time.Duration
}

// Cluster is N orderd processes on loopback ports, sharing whatever backends
// their flags name.
type Cluster struct {
	opts      Options
	dir       string
	instances []*instance
}

// instance is one orderd process slot: its port and log survive restarts.
type instance struct {
	port int
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been reaped
	state  *os.ProcessState
}

// Start builds nothing: it starts opts.N instances of opts.Binary, waits until
// each answers /readyz with 200, and stops them all when t ends (printing the
// tail of each instance's log when t failed).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.N <= 0 {
		opts.N = 3
	}
	if opts.AdminToken == "" {
		opts.AdminToken = "faults"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	c := &Cluster{opts: opts, dir: t.TempDir()}
	t.Cleanup(func() {
		for i := range c.instances {
			_ = c.Kill(i)
		}
		if t.Failed() {
			for i := range c.instances {
				t.Logf("orderd %d log (last lines of %s):\n%s", i, c.instances[i].log, c.LogTail(i, 40))
			}
		}
	})
	for i := range opts.N {
		port, err := FreePort(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		c.instances = append(c.instances, &instance{port: port, log: filepath.Join(c.dir, fmt.Sprintf("orderd-%d.log", i))})
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range opts.N {
		ctx, cancel := context.WithTimeout(context.Background(), opts.ReadyTimeout)
		err := c.WaitReady(ctx, i)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// N is the number of instances.
func (c *Cluster) N() int { return len(c.instances) }

// AdminToken is the instances' admin token.
func (c *Cluster) AdminToken() string { return c.opts.AdminToken }

// URL is instance i's base URL; it stays the same across restarts.
func (c *Cluster) URL(i int) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.instances[i].port)
}

// URLs are all instances' base URLs.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.instances))
	for i := range urls {
		urls[i] = c.URL(i)
	}
	return urls
}

func (c *Cluster) start(i int) error {
	in := c.instances[i]
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd != nil {
		select {
		case <-in.exited:
		default:
			return fmt.Errorf("cluster: orderd %d is still running (pid %d)", i, in.cmd.Process.Pid)
		}
	}
	logf, err := os.OpenFile(in.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: orderd %d log: %w", i, err)
	}
	fmt.Fprintf(logf, "==== harness: starting orderd %d at %s\n", i, time.Now().Format(time.RFC3339Nano))
	args := append([]string{"--listen", "127.0.0.1:" + strconv.Itoa(in.port), "--admin-token", c.opts.AdminToken}, c.opts.Args...)
	args = append(args, c.opts.InstanceArgs[i]...)
	cmd := exec.Command(c.opts.Binary, args...)
	if env := c.opts.Env[i]; len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C of the test must not reach it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cluster: start orderd %d: %w", i, err)
	}
	exited := make(chan struct{})
	in.cmd, in.exited, in.state = cmd, exited, nil
	go func() {
		_ = cmd.Wait()
		logf.Close()
		in.mu.Lock()
		in.state = cmd.ProcessState
		in.mu.Unlock()
		close(exited)
	}()
	return nil
}

// proc returns instance i's current process and its exit channel.
func (c *Cluster) proc(i int) (*exec.Cmd, chan struct{}) {
	in := c.instances[i]
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cmd, in.exited
}

// PID is instance i's process id (of its latest start).
func (c *Cluster) PID(i int) int {
	cmd, _ := c.proc(i)
	return cmd.Process.Pid
}

// Running reports whether instance i's process has not exited.
func (c *Cluster) Running(i int) bool {
	_, exited := c.proc(i)
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to instance i.
func (c *Cluster) Signal(i int, sig syscall.Signal) error {
	cmd, exited := c.proc(i)
	select {
	case <-exited:
		return fmt.Errorf("cluster: signal %v to orderd %d: it has exited", sig, i)
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("cluster: signal %v to orderd %d: %w", sig, i, err)
	}
	return nil
}

// Wait waits until instance i exits or ctx ends, and returns its exit state.
func (c *Cluster) Wait(ctx context.Context, i int) (*os.ProcessState, error) {
	_, exited := c.proc(i)
	select {
	case <-exited:
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster: orderd %d did not exit: %w", i, ctx.Err())
	}
	in := c.instances[i]
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.state, nil
}

// Kill kills instance i with SIGKILL (a crash) and waits until it is gone. It
// is a no-op when the instance has exited.
func (c *Cluster) Kill(i int) error {
	if !c.Running(i) {
		return nil
	}
	if err := c.Signal(i, syscall.SIGKILL); err != nil && c.Running(i) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.Wait(ctx, i)
	return err
}

// Restart starts instance i again (it must have exited) on the same port and
// waits until it is ready.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.WaitReady(ctx, i)
}

// WaitReady waits until instance i answers GET /readyz with 200.
func (c *Cluster) WaitReady(ctx context.Context, i int) error {
	return c.waitStatus(ctx, i, "/readyz")
}

// WaitHealthy waits until instance i answers GET /healthz with 200 (it serves,
// whatever its backends).
func (c *Cluster) WaitHealthy(ctx context.Context, i int) error {
	return c.waitStatus(ctx, i, "/healthz")
}

func (c *Cluster) waitStatus(ctx context.Context, i int, path string) error {
	client := &http.Client{Timeout: 3 * time.Second}
	var last string
	for {
		if !c.Running(i) {
			return fmt.Errorf("cluster: orderd %d exited while waiting for %s:\n%s", i, path, c.LogTail(i, 20))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(i)+path, nil)
		resp, err := client.Do(req)
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b.String())
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: orderd %d not ready (%s: %s): %w", i, path, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ready returns instance i's /readyz answer: the status code and the body.
func (c *Cluster) Ready(ctx context.Context, i int) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(i)+"/readyz", nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("cluster: readyz of orderd %d: %w", i, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), nil
}

// RSS returns instance i's resident memory (VmRSS) in bytes.
func (c *Cluster) RSS(i int) (int64, error) {
	return RSS(c.PID(i))
}

// RSS returns a process's resident memory (VmRSS in /proc/PID/status) in bytes.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("cluster: rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cluster: rss: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("cluster: rss: no VmRSS line")
}

// LogTail returns the last n lines of instance i's log (all its runs).
func (c *Cluster) LogTail(i, n int) string {
	b, err := os.ReadFile(c.instances[i].log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Log returns instance i's whole log.
func (c *Cluster) Log(i int) string {
	b, _ := os.ReadFile(c.instances[i].log)
	return string(b)
}

// WaitLog waits until instance i's log holds a line containing substr after
// the first `after` bytes (see LogSize), and returns the time it saw it.
func (c *Cluster) WaitLog(ctx context.Context, i int, after int64, substr string) (time.Time, error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(c.instances[i].log); err == nil && int64(len(b)) > after &&
			strings.Contains(string(b[after:]), substr) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("cluster: orderd %d never logged %q: %w", i, substr, ctx.Err())
		case <-tick.C:
		}
	}
}

// LogSize returns the size of instance i's log now, for WaitLog.
func (c *Cluster) LogSize(i int) int64 {
	st, err := os.Stat(c.instances[i].log)
	if err != nil {
		return 0
	}
	return st.Size()
}
