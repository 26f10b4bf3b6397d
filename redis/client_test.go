package redis_test

import (
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder/redis"
)

// TestOpenUniversalClient checks the two URL forms: redis:// gives one
// server's client, redis+cluster:// a cluster client on every listed seed,
// both with the timeout for what the URL leaves unset.
func TestOpenUniversalClient(t *testing.T) {
	c, err := redis.OpenUniversalClient("redis://127.0.0.1:1/2", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*goredis.Client); !ok {
		t.Fatalf("redis:// gave %T, want *goredis.Client", c)
	}

	c, err = redis.OpenUniversalClient("redis+cluster://u:p@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/?read_timeout=3s", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc, ok := c.(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("redis+cluster:// gave %T, want *goredis.ClusterClient", c)
	}
	o := cc.Options()
	if len(o.Addrs) != 3 || o.Addrs[0] != "127.0.0.1:1" || o.Addrs[2] != "127.0.0.1:3" {
		t.Errorf("Addrs %v", o.Addrs)
	}
	if o.Username != "u" || o.Password != "p" {
		t.Errorf("user %q password %q", o.Username, o.Password)
	}
	if o.ReadTimeout != 3*time.Second || o.WriteTimeout != time.Second || o.PoolTimeout != time.Second ||
		o.DialTimeout != 2*redis.DefaultTimeout || o.MaxRedirects != redis.DefaultMaxRedirects || !o.ContextTimeoutEnabled {
		t.Errorf("options: read %v write %v pool %v dial %v redirects %d context %v",
			o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.DialTimeout, o.MaxRedirects, o.ContextTimeoutEnabled)
	}

	for _, bad := range []string{
		"redis+cluster://127.0.0.1:1/1",
		"redis+cluster://127.0.0.1,127.0.0.1:2",
		"redis+cluster://127.0.0.1:1/?addr=127.0.0.1:2",
		"redis+cluster://127.0.0.1:1/?color=blue",
	} {
		if c, err := redis.OpenUniversalClient(bad, time.Second); err == nil {
			c.Close()
			t.Errorf("%s: no error", bad)
		}
	}
}
