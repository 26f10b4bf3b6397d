package testenv

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSURL returns the client URLs of the 3-node NATS JetStream cluster that
// the services script started (nats://host:port,host:port,host:port, shared
// by every test package); without it the test skips (see Service).
func NATSURL(t testing.TB) string {
	t.Helper()
	return Service(t, "FLASHORDER_TEST_NATS")
}

// NATSPrefix returns a subject prefix of the test's own, "fotest." and name
// made unique, whose stream (stream gives its name, relay.StreamName) is
// deleted from the cluster at servers (nats://host:port,...) when the test
// ends.
func NATSPrefix(t testing.TB, servers, name string, stream func(prefix string) string) string {
	t.Helper()
	prefix := "fotest." + strings.ReplaceAll(Unique(name), "-", "_")
	t.Cleanup(func() {
		nc, err := nats.Connect(strings.TrimPrefix(servers, "nats://"))
		if err != nil {
			t.Logf("delete stream: %v", err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream(prefix)); err != nil {
			t.Logf("delete stream: %v", err)
		}
	})
	return prefix
}

// NATSCluster is a 3-node NATS JetStream cluster of one test's own, started
// with the services script in a private state directory, so that the test
// can kill, stop and restart its servers without disturbing the tests that
// share the common one.
type NATSCluster struct {
	// URL lists the three servers' client addresses
	// (nats://host:port,host:port,host:port); it stays the same across
	// Restart.
	URL string

	private
}

// PrivateNATS starts a 3-node NATS cluster for t alone and stops it when t
// ends. The test skips when the services script is unknown
// (FLASHORDER_SERVICES_SCRIPT, exported by the script's env; see Service).
func PrivateNATS(t testing.TB) *NATSCluster {
	t.Helper()
	c := &NATSCluster{}
	c.URL = c.start(t, "nats", "FLASHORDER_TEST_NATS")
	return c
}

// Kill sends SIGKILL to server n (1..3), by the pid in its state directory:
// a crash. Restart brings it back.
func (c *NATSCluster) Kill(t testing.TB, n int) {
	t.Helper()
	pidfile := c.env(t, fmt.Sprintf("FLASHORDER_NATS_%d_PIDFILE", n))
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("testenv: nats-%d pid: %v", n, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("testenv: nats-%d pid file %s: %v", n, pidfile, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("testenv: kill -9 nats-%d (pid %d): %v", n, pid, err)
	}
	// Wait until it is gone (the script's kill waits; this is the same).
	c.run(t, "kill", fmt.Sprintf("nats-%d", n))
}

// Stop stops every server (SIGTERM), keeping ports and data for Restart.
func (c *NATSCluster) Stop(t testing.TB) { t.Helper(); c.run(t, "stop", "nats") }

// Restart starts the servers that are down again on their ports, with
// their data, and waits until they are ready.
func (c *NATSCluster) Restart(t testing.TB) {
	t.Helper()
	var down []string
	out := string(c.run(t, "status"))
	for n := 1; n <= 3; n++ {
		if strings.Contains(out, fmt.Sprintf("nats-%d: stopped", n)) {
			down = append(down, fmt.Sprintf("nats-%d", n))
		}
	}
	if len(down) > 0 {
		c.run(t, append([]string{"restart"}, down...)...)
	}
}
