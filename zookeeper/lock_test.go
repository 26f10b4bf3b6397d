package zookeeper_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/zk"
	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/locktest"
	"github.com/flashorder/flashorder/zookeeper"
)

// sessionTimeout is short so that the fault tests (a dead holder, an expired
// session) take seconds; the server's minimum is 1 s (tickTime 500 ms).
const sessionTimeout = 2 * time.Second

func newLocker(t testing.TB, addrs []string, root string, timeout time.Duration) *zookeeper.Locker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := zookeeper.NewLocker(ctx, addrs, zookeeper.LockerOptions{Prefix: root, SessionTimeout: timeout})
	if err != nil {
		t.Fatalf("new locker: %v", err)
	}
	return l
}

func testRoot() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "/flashorder-test/" + hex.EncodeToString(b)
}

func backend(t testing.TB, addrs []string) locktest.Backend {
	root := testRoot()
	probe := newLocker(t, addrs, root, 10*time.Second)
	t.Cleanup(func() { probe.Close() })
	admin, _, err := zk.Connect(addrs, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	// Connect now, so that the suite's goroutine-leak check counts the
	// admin connection's goroutines as already there.
	if _, _, err := admin.Exists("/"); err != nil {
		t.Fatal(err)
	}
	return locktest.Backend{
		NewClient:   func(t testing.TB) flashorder.Locker { return newLocker(t, addrs, root, sessionTimeout) },
		Addrs:       addrs,
		NewClientAt: func(t testing.TB, a []string) flashorder.Locker { return newLocker(t, a, root, sessionTimeout) },
		Expiry:      sessionTimeout,
		FIFO:        true,
		// The admin and probe connections, made before the suite, start
		// new send and receive loops when they reconnect (a loaded
		// machine misses a ping). A leaked connection still shows: its
		// main loop is not ignored.
		LeakOptions: []goleak.Option{
			goleak.IgnoreAnyFunction("github.com/flashorder/flashorder/internal/zk.(*Conn).sendLoop"),
			goleak.IgnoreAnyFunction("github.com/flashorder/flashorder/internal/zk.(*Conn).recvLoop"),
		},
		Leftovers: func(t testing.TB, key string) int {
			children, _, err := admin.Children(probe.KeyPath(key))
			if errors.Is(err, zk.ErrNoNode) {
				return 0
			}
			if err != nil {
				t.Fatalf("list %s: %v", probe.KeyPath(key), err)
			}
			return len(children)
		},
	}
}

func TestLocker(t *testing.T) {
	addrs := testenv.ZooKeeperAddrs(t)
	locktest.Run(t, backend(t, addrs))
}

func BenchmarkLocker(b *testing.B) {
	addrs := testenv.ZooKeeperAddrs(b)
	root := testRoot()
	locktest.Bench(b, func(b testing.TB) flashorder.Locker { return newLocker(b, addrs, root, 10*time.Second) })
}

// fourLetter sends a ZooKeeper four-letter command and returns the answer.
func fourLetter(t testing.TB, addr, cmd string) string {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Logf("%s %s: %v", cmd, addr, err)
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(cmd)); err != nil {
		return ""
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// TestLockerEnsemble runs the suite against the 3-node ensemble, then kills
// the ensemble's leader while clients contend for a key.
func TestLockerEnsemble(t *testing.T) {
	addrs := testenv.ZooKeeperEnsembleAddrs(t)
	locktest.Run(t, backend(t, addrs))
	t.Run("LeaderKilled", func(t *testing.T) { testLeaderKilled(t, addrs) })
}

// testLeaderKilled has three clients (10 s sessions) increment a counter
// under one key while the leader is killed and restarted: the ensemble
// elects another within the session timeout, so sessions, locks and mutual
// exclusion survive.
func testLeaderKilled(t *testing.T, addrs []string) {
	script := testenv.Service(t, "FLASHORDER_SERVICES_SCRIPT")
	if script == "" {
		return
	}
	leader := -1
	for i, a := range addrs {
		if strings.Contains(fourLetter(t, a, "srvr"), "Mode: leader") {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("no leader among %v", addrs)
	}
	unit := fmt.Sprintf("zk3-%d", leader+1)
	restarted := false
	restart := func() {
		if restarted {
			return
		}
		restarted = true
		if out, err := exec.Command(script, "restart", unit).CombinedOutput(); err != nil {
			t.Errorf("restart %s: %v\n%s", unit, err, out)
		}
	}
	t.Cleanup(restart)

	root := testRoot()
	key := locktest.Key("failover")
	var counter, inside, lost atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for c := 0; c < 3; c++ {
		l := newLocker(t, addrs, root, 10*time.Second)
		t.Cleanup(func() { l.Close() })
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					lk, err := l.Lock(ctx, key)
					cancel()
					if err != nil {
						// A call may fail while the ensemble elects; the
						// next one must work again.
						time.Sleep(50 * time.Millisecond)
						continue
					}
					if n := inside.Add(1); n != 1 {
						errs <- fmt.Errorf("%d holders at once", n)
					}
					v := counter.Load()
					time.Sleep(time.Millisecond)
					counter.Store(v + 1)
					inside.Add(-1)
					select {
					case <-lk.Lost():
						lost.Add(1)
					default:
					}
					lk.Unlock(context.Background())
				}
			}()
		}
	}
	stopWorkers := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopWorkers()
	time.Sleep(time.Second)
	if out, err := exec.Command(script, "kill", unit).CombinedOutput(); err != nil {
		t.Fatalf("kill %s: %v\n%s", unit, err, out)
	}
	killedAt := time.Now()
	// Wait for the survivors to elect a new leader; the clients must make
	// progress under it.
	for elected := false; !elected; {
		for i, a := range addrs {
			if i != leader && strings.Contains(fourLetter(t, a, "srvr"), "Mode: leader") {
				elected = true
			}
		}
		if time.Since(killedAt) > 30*time.Second {
			t.Fatalf("no new leader within 30 s of killing %s", unit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("new leader elected %v after killing %s", time.Since(killedAt).Round(time.Millisecond), unit)
	before := counter.Load()
	for counter.Load() < before+50 {
		if time.Since(killedAt) > 30*time.Second {
			t.Fatalf("no progress within 30 s of killing the leader %s (counter %d -> %d)", unit, before, counter.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("50 more locked increments %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	restart()
	stopWorkers()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if lost.Load() > 0 {
		t.Errorf("%d locks were lost although no session expired", lost.Load())
	}
}

// TestLocalQueue has a thousand goroutines of one process wait for one key:
// only one of them may have a znode at a time.
func TestLocalQueue(t *testing.T) {
	addrs := testenv.ZooKeeperAddrs(t)
	b := backend(t, addrs)
	holderClient := b.NewClient(t)
	defer holderClient.Close()
	crowd := b.NewClient(t)
	defer crowd.Close()
	key := locktest.Key("crowd")
	ctx := context.Background()
	holder, err := holderClient.Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var got atomic.Int64
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk, err := crowd.Lock(ctx, key)
			if err != nil {
				t.Error(err)
				return
			}
			got.Add(1)
			lk.Unlock(ctx)
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if n := b.Leftovers(t, key); n != 2 {
		t.Fatalf("%d znodes for one holder and 1000 waiters of one process, want 2", n)
	}
	holder.Unlock(ctx)
	wg.Wait()
	if got.Load() != 1000 {
		t.Fatalf("%d of 1000 waiters acquired", got.Load())
	}
}

// TestParentRecreated removes a key's parent znode between two holders: the
// token (czxid) still grows.
func TestParentRecreated(t *testing.T) {
	addrs := testenv.ZooKeeperAddrs(t)
	l := newLocker(t, addrs, testRoot(), sessionTimeout)
	defer l.Close()
	admin, _, err := zk.Connect(addrs, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	key := locktest.Key("parent")
	ctx := context.Background()
	var last int64
	for i := 0; i < 3; i++ {
		lk, err := l.Lock(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if lk.Token() <= last {
			t.Fatalf("token %d after %d", lk.Token(), last)
		}
		last = lk.Token()
		if err := lk.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := admin.Delete(l.KeyPath(key), -1); err != nil {
			t.Fatalf("delete parent: %v", err)
		}
	}
}
