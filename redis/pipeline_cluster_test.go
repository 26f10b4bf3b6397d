package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestScriptBatcherAcrossSlots sends one pipeline whose scripts touch keys
// of many slots on every master of the services script's Redis Cluster:
// the cluster client splits it by node and every call gets its own answer.
// The script is new to the cluster, so the first pipeline is answered
// NOSCRIPT by every node and each call runs again alone (which loads it);
// the second pipeline runs on EVALSHA.
func TestScriptBatcherAcrossSlots(t *testing.T) {
	ctx := context.Background()
	c, err := OpenUniversalClient(testenv.RedisClusterURL(t), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc := c.(*goredis.ClusterClient)
	tag := testenv.Unique("fotest")
	script := goredis.NewScript("-- " + tag + "\n" +
		"local n = redis.call('INCRBY', KEYS[1], ARGV[1])\n" +
		"redis.call('PEXPIRE', KEYS[1], 60000)\n" +
		"return {KEYS[1], n}")
	keys, masters := make([]string, 30), map[string]bool{}
	for i := range keys {
		keys[i] = fmt.Sprintf("%s:{q:batch-%d}:n", tag, i)
		m, err := cc.MasterForKey(ctx, keys[i])
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
	}
	if len(masters) < 3 {
		t.Fatalf("the keys are on %d masters, want 3", len(masters))
	}
	b := newScriptBatcher(c, 5*time.Second)
	for round := 1; round <= 2; round++ {
		batch := make([]*scriptCall, len(keys))
		for i, k := range keys {
			batch[i] = &scriptCall{script: script, keys: []string{k}, args: []any{i + 1}, done: make(chan struct{})}
		}
		b.flush(batch)
		for i, call := range batch {
			<-call.done
			if call.err != nil {
				t.Fatalf("round %d, key %s: %v", round, keys[i], call.err)
			}
			if len(call.res) != 2 || call.res[0] != keys[i] || call.res[1] != int64((i+1)*round) {
				t.Fatalf("round %d, key %s: answer %v, want [%s %d]", round, keys[i], call.res, keys[i], (i+1)*round)
			}
		}
	}
}
