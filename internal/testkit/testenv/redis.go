package testenv

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RedisURL returns the URL of the Redis server that the services script
// started (shared by every test package); without it the test skips.
func RedisURL(t testing.TB) string {
	t.Helper()
	return Service(t, "FLASHORDER_TEST_REDIS_URL")
}

// RedisClusterURL returns the redis+cluster:// URL (see
// redis.OpenUniversalClient) of the 3-master Redis Cluster that the services
// script started (FLASHORDER_TEST_REDIS_CLUSTER, host:port,host:port,host:port,
// shared by every test package); without it the test skips (see Service).
func RedisClusterURL(t testing.TB) string {
	t.Helper()
	return "redis+cluster://" + Service(t, "FLASHORDER_TEST_REDIS_CLUSTER") + "/"
}

// RedisServer is a Redis server of one test's own, started with the services
// script in a private state directory, so that the test can stop, restart or
// flush it without disturbing the tests that share the common one.
type RedisServer struct {
	// URL is the server's redis:// URL; it stays the same across Restart.
	URL string

	private
}

// PrivateRedis starts a Redis server for t alone and stops it when t ends.
// The test skips when the services script is unknown
// (FLASHORDER_SERVICES_SCRIPT, exported by the script's env; see Service).
func PrivateRedis(t testing.TB) *RedisServer {
	t.Helper()
	r := &RedisServer{}
	r.URL = r.start(t, "redis", "FLASHORDER_TEST_REDIS_URL")
	return r
}

// Stop stops the server, keeping its port for Restart.
func (r *RedisServer) Stop(t testing.TB) { t.Helper(); r.run(t, "stop", "redis") }

// Restart starts the stopped server again on the same port, empty.
func (r *RedisServer) Restart(t testing.TB) { t.Helper(); r.run(t, "restart", "redis") }

// private is a set of services of one test's own, started with the services
// script in a private state directory and stopped when the test ends.
type private struct {
	script, dir string
}

// start starts service in a new private state directory and returns the
// value of its variable name in the script's env.
func (p *private) start(t testing.TB, service, name string) string {
	t.Helper()
	p.script = Service(t, "FLASHORDER_SERVICES_SCRIPT")
	dir, err := os.MkdirTemp("", "flashorder-"+service+"-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p.dir = dir
	t.Cleanup(func() { p.run(t, "stop") })
	p.run(t, "start", service)
	v := p.env(t, name)
	if v == "" {
		t.Fatalf("testenv: the services script printed no %s", name)
	}
	return v
}

// env returns the value of the variable name in the script's env.
func (p *private) env(t testing.TB, name string) string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(p.run(t, "env")))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "export "+name+"="); ok {
			return strings.Trim(v, `'"`)
		}
	}
	return ""
}

func (p *private) run(t testing.TB, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.script, args...)
	cmd.Env = append(os.Environ(), "FLASHORDER_SERVICES_DIR="+p.dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv: services.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}
