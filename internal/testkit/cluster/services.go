package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// Services is a private set of real servers started with scripts/services.sh
// in a state directory of its own, so that a fault test may kill PostgreSQL,
// Redis or ZooKeeper members without disturbing the tests of other packages,
// which use the common set.
type Services struct {
	// Env holds the FLASHORDER_* variables the script exported for this set
	// (addresses, ports, pid files), without the "export" and quotes.
	Env map[string]string

	script, dir string
}

// StartServices starts the named services (scripts/services.sh names:
// postgres, redis, zk3, ...) with durable settings (FLASHORDER_DURABLE=1) for
// t alone and stops them, deleting their state, when t ends. When the
// services script is unknown (FLASHORDER_SERVICES_SCRIPT, exported by the
// script's env) t skips, or fails under FLASHORDER_REQUIRE_SERVICES=1.
func StartServices(t testing.TB, names ...string) *Services {
	t.Helper()
	script := testenv.Service(t, "FLASHORDER_SERVICES_SCRIPT")
	dir, err := os.MkdirTemp("", "flashorder-faults-")
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	s := &Services{script: script, dir: dir}
	t.Cleanup(func() {
		if _, err := s.run(context.Background(), "stop"); err != nil {
			t.Errorf("cluster: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := s.run(ctx, append([]string{"start"}, names...)...); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	out, err := s.run(ctx, "env")
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	s.Env = parseEnv(out)
	return s
}

// parseEnv reads the script's `export NAME='value'` lines.
func parseEnv(out []byte) map[string]string {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		env[name] = strings.ReplaceAll(strings.Trim(value, "'"), `'\''`, "'")
	}
	return env
}

// Dir is the services' state directory.
func (s *Services) Dir() string { return s.dir }

// run runs the services script on this set.
func (s *Services) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.script, args...)
	// Durable settings (fsync, synchronous_commit on): the fast test mode
	// acknowledges commits before their WAL is written, so a PostgreSQL crash
	// would lose answered orders, which is what these tests look for.
	cmd.Env = append(os.Environ(), "FLASHORDER_SERVICES_DIR="+s.dir, "FLASHORDER_DURABLE=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("services.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// Kill crashes a unit (postgres, redis, zk3-1, ...) with SIGKILL.
func (s *Services) Kill(ctx context.Context, unit string) error {
	_, err := s.run(ctx, "kill", unit)
	return err
}

// Stop stops a unit gracefully, keeping its port and data for Restart.
func (s *Services) Stop(ctx context.Context, unit string) error {
	_, err := s.run(ctx, "stop", unit)
	return err
}

// Restart starts a stopped or killed unit again on its port and data, and
// waits until it is ready.
func (s *Services) Restart(ctx context.Context, unit string) error {
	_, err := s.run(ctx, "restart", unit)
	return err
}

// Port returns a unit's port.
func (s *Services) Port(unit string) (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, unit, "port"))
	if err != nil {
		return 0, fmt.Errorf("cluster: port of %s: %w", unit, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// ZKMode asks a ZooKeeper unit for its mode with the srvr four-letter word:
// "leader", "follower", "standalone", or an error when it does not answer.
func (s *Services) ZKMode(ctx context.Context, unit string) (string, error) {
	port, err := s.Port(unit)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return "", fmt.Errorf("cluster: srvr to %s: %w", unit, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("srvr")); err != nil {
		return "", fmt.Errorf("cluster: srvr to %s: %w", unit, err)
	}
	var out bytes.Buffer
	_, _ = out.ReadFrom(c)
	for _, line := range strings.Split(out.String(), "\n") {
		if mode, ok := strings.CutPrefix(line, "Mode: "); ok {
			return strings.TrimSpace(mode), nil
		}
	}
	return "", fmt.Errorf("cluster: %s answered srvr without a mode: %q", unit, out.String())
}

// ZKLeader returns the ensemble member (zk3-1, zk3-2 or zk3-3) that is the
// leader, waiting until ctx ends for one to be elected.
func (s *Services) ZKLeader(ctx context.Context) (string, error) {
	for {
		for _, u := range []string{"zk3-1", "zk3-2", "zk3-3"} {
			if mode, err := s.ZKMode(ctx, u); err == nil && mode == "leader" {
				return u, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("cluster: no ZooKeeper leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PID returns a unit's process id from its pid file.
func (s *Services) PID(unit string) (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, unit, "pid"))
	if err != nil {
		return 0, fmt.Errorf("cluster: pid of %s: %w", unit, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
