package orderd_test

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/orderd"
)

// config returns orderd's default configuration with args applied.
func config(t *testing.T, args ...string) orderd.Config {
	t.Helper()
	var cfg orderd.Config
	if err := orderd.FlagSet(&cfg, io.Discard).Parse(args); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestConfigValidate runs every rule of Config.Validate with a value it
// takes and one it refuses; want is what the refusal names ("": valid).
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"defaults", nil, ""},
		{"listen empty", []string{"--listen", ""}, "--listen"},

		{"strategy batch", []string{"--strategy", "batch"}, ""},
		{"strategy row", []string{"--strategy", "row"}, ""},
		{"strategy segment", []string{"--strategy", "segment"}, ""},
		{"strategy lock", []string{"--strategy", "lock"}, ""},
		{"strategy unknown", []string{"--strategy", "magic"}, `--strategy "magic" is not supported`},

		{"db sqlite", []string{"--db", "sqlite://data/x.db"}, ""},
		{"db postgres", []string{"--db", "postgres://u:p@h:5432/db?sslmode=disable"}, ""},
		{"db postgresql", []string{"--db", "postgresql://u@h/db"}, ""},
		{"db mysql", []string{"--db", "mysql://u:p@h:3306/db"}, ""},
		{"db mariadb", []string{"--db", "mariadb://u:p@h:3306/db"}, ""},
		{"db unknown scheme", []string{"--db", "oracle://u:secret@h/db"}, `--db "oracle://u:xxxxx@h/db" is not supported`},
		{"db not a URL", []string{"--db", "postgres://u:p%zz@h/db"}, "--db: not a URL"},

		{"lock memory", []string{"--lock", "memory"}, ""},
		{"lock zk", []string{"--lock", "zk://h1:2181,h2:2181/flashorder?session_timeout=5s"}, ""},
		{"lock etcd", []string{"--lock", "etcd://h:2379/flashorder?ttl=5s"}, ""},
		{"lock redis", []string{"--lock", "redis://h:6379/0?ttl=5s"}, ""},
		{"lock unknown scheme", []string{"--lock", "consul://h:8500/x"}, `--lock "consul://h:8500/x" is not supported`},
		{"lock zk bad session timeout", []string{"--lock", "zk://h:2181/x?session_timeout=soon"}, "session_timeout"},
		{"lock zk unknown parameter", []string{"--lock", "zk://h:2181/x?color=blue"}, `unknown parameter "color"`},
		{"lock etcd negative ttl", []string{"--lock", "etcd://h:2379/x?ttl=-1s"}, "not a positive duration"},
		{"lock redis zero ttl", []string{"--lock", "redis://h:6379/0?ttl=0s"}, "not a positive duration"},
		{"lock redis bad option", []string{"--lock", "redis://h:6379/0?color=blue"}, "--lock"},
		{"lock not a URL", []string{"--lock", "://nope"}, "--lock: not a URL"},

		{"idempotency memory", []string{"--idempotency", "memory"}, ""},
		{"idempotency redis", []string{"--idempotency", "redis://h:6379/0"}, ""},
		{"idempotency unknown scheme", []string{"--idempotency", "memcached://x"}, `--idempotency "memcached://x" is not supported`},
		{"idempotency not a URL", []string{"--idempotency", "redis://%zz"}, "--idempotency: not a URL"},
		{"idempotency bad redis db", []string{"--idempotency", "redis://h:6379/x"}, "--idempotency"},

		{"rate limit", []string{"--rate-limit-user", "5/s", "--rate-limit-burst", "10"}, ""},
		{"rate limit bad", []string{"--rate-limit-user", "fast"}, "--rate-limit-user"},
		{"rate limit store memory", []string{"--rate-limit-user", "5/s", "--rate-limit-store", "memory"}, ""},
		{"rate limit store redis", []string{"--rate-limit-user", "5/s", "--rate-limit-store", "redis://h:6379/1"}, ""},
		{"rate limit store unknown", []string{"--rate-limit-store", "memcached://x"}, `--rate-limit-store "memcached://x" is not supported`},
		{"rate limit burst negative", []string{"--rate-limit-burst", "-1"}, "--rate-limit-burst must not be negative"},

		{"lock timeout below idle timeout", []string{"--db-lock-timeout", "1s", "--db-idle-tx-timeout", "2s"}, ""},
		{"lock timeout equal to idle timeout", []string{"--db-lock-timeout", "2s", "--db-idle-tx-timeout", "2s"}, "--db-lock-timeout (2s) must be below --db-idle-tx-timeout (2s)"},
		{"lock timeout above idle timeout", []string{"--db-lock-timeout", "3s"}, "must be below --db-idle-tx-timeout"},
		{"lock timeout with idle timeout off", []string{"--db-lock-timeout", "3s", "--db-idle-tx-timeout", "0"}, ""},
		{"lock timeout the database's", []string{"--db-lock-timeout", "0", "--db-idle-tx-timeout", "1s"}, ""},
		{"idle timeout negative", []string{"--db-idle-tx-timeout", "-1s"}, "--db-idle-tx-timeout must not be negative"},
		{"keepalive off", []string{"--db-keepalive", "0"}, ""},
		{"max conns zero", []string{"--db-max-conns", "0"}, "--db-max-conns must be positive"},

		{"pipeline auto on SQLite", []string{"--batch-pipeline", "0"}, ""},
		{"pipeline 1 on SQLite", []string{"--batch-pipeline", "1"}, ""},
		{"pipeline 2 on SQLite", []string{"--batch-pipeline", "2"}, "--batch-pipeline 2 on SQLite"},
		{"pipeline 4 on PostgreSQL", []string{"--db", "postgres://h/db", "--batch-pipeline", "4"}, ""},
		{"pipeline negative", []string{"--batch-pipeline", "-1"}, "--batch-pipeline must not be negative"},
		{"batch max zero", []string{"--batch-max", "0"}, "--batch-max must be positive"},
		{"batch queue zero", []string{"--batch-queue", "0"}, "--batch-queue must be positive"},
		{"segments zero", []string{"--segments", "0"}, "--segments must be positive"},

		{"sold-out ttl off", []string{"--sold-out-ttl", "0"}, ""},
		{"sold-out ttl negative", []string{"--sold-out-ttl", "-1s"}, "--sold-out-ttl must not be negative"},
		{"product cache off", []string{"--product-cache-ttl", "0"}, ""},
		{"product cache negative", []string{"--product-cache-ttl", "-1ns"}, "--product-cache-ttl must not be negative"},
		{"order timeout negative", []string{"--order-timeout", "-1s"}, "--order-timeout must not be negative"},
		{"max inflight unbounded", []string{"--max-inflight", "0"}, ""},
		{"idempotency keys unbounded", []string{"--idempotency-max-keys", "0"}, ""},
		{"idempotency retention zero", []string{"--idempotency-retention", "0"}, "--idempotency-retention must be positive"},
		{"claim ttl zero", []string{"--idempotency-claim-ttl", "0"}, "--idempotency-claim-ttl must be positive"},
		{"rate limit store cluster", []string{"--rate-limit-store", "redis+cluster://h1:6379,h2:6379/"}, "--rate-limit-store redis+cluster://h1:6379,h2:6379/: a Redis Cluster (redis+cluster://) is supported by --queue-store only"},

		{"queue store memory", []string{"--queue-store", "memory"}, ""},
		{"queue store redis", []string{"--queue-store", "redis://h:6379/2"}, ""},
		{"queue store cluster", []string{"--queue-store", "redis+cluster://u:secret@h1:6379,h2:6379,h3:6379/?read_timeout=2s"}, ""},
		{"queue store cluster TLS", []string{"--queue-store", "rediss+cluster://h1:6379"}, ""},
		{"queue store cluster db", []string{"--queue-store", "redis+cluster://h1:6379/3"}, "a cluster has only database 0"},
		{"queue store cluster no port", []string{"--queue-store", "redis+cluster://h1,h2:6379"}, `"h1" is not host:port`},
		{"queue store cluster bad option", []string{"--queue-store", "redis+cluster://h1:6379/?color=blue"}, "--queue-store"},
		{"queue store cluster password redacted", []string{"--queue-store", "redis+cluster://u:secret@h1:6379/9"}, "redis+cluster://u:xxxxx@h1:6379/9"},
		{"queue store unknown", []string{"--queue-store", "memcached://x"}, "want memory, redis://host:port/db or redis+cluster://"},
		{"idempotency cluster", []string{"--idempotency", "redis+cluster://h1:6379,h2:6379/"}, "--idempotency needs one Redis"},
		{"lock cluster", []string{"--lock", "redis+cluster://h1:6379,h2:6379/"}, "--lock needs one Redis"},

		{"shutdown timeout zero", []string{"--shutdown-timeout", "0"}, "--shutdown-timeout must be positive"},
		{"payment timeout zero", []string{"--payment-timeout", "0"}, "--payment-timeout must be positive"},
		{"sweep interval negative", []string{"--sweep-interval", "-1s"}, "--sweep-interval must be positive"},
		{"sweep batch zero", []string{"--sweep-batch", "0"}, "--sweep-batch must be positive"},

		{"auth jwt with a secret", []string{"--auth", "jwt", "--jwt-secret", "s"}, ""},
		{"auth jwt with a JWKS", []string{"--auth", "jwt", "--jwt-jwks", "/etc/jwks.json", "--jwt-issuer", "i"}, ""},
		{"auth unknown", []string{"--auth", "basic"}, `--auth "basic" is not supported`},
		{"auth jwt without a key", []string{"--auth", "jwt"}, "exactly one of --jwt-secret and --jwt-jwks"},
		{"auth jwt with two keys", []string{"--auth", "jwt", "--jwt-secret", "s", "--jwt-jwks", "/etc/jwks.json"}, "exactly one of"},
		{"jwt flags without auth jwt", []string{"--jwt-audience", "a"}, "--jwt-* flags need --auth jwt"},

		{"log json debug", []string{"--log-format", "json", "--log-level", "debug"}, ""},
		{"log format unknown", []string{"--log-format", "xml"}, "--log-format must be text or json"},
		{"log level unknown", []string{"--log-level", "loud"}, "--log-level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := config(t, tc.args...).Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%v: %v", tc.args, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%v: got %v, want an error naming %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestConfigValidateJoins: Validate reports every problem, not the first.
func TestConfigValidateJoins(t *testing.T) {
	err := config(t, "--strategy", "magic", "--db", "sqlite://x.db", "--batch-pipeline", "3", "--sold-out-ttl", "-1s").Validate()
	for _, want := range []string{"--strategy", "--batch-pipeline 3 on SQLite", "--sold-out-ttl"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to name %q", err, want)
		}
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 3 {
		t.Errorf("%d lines, want one per problem:\n%v", n, err)
	}
}

// TestConfigZeroRule checks the one rule for zero values: a count or
// duration flag whose help says what 0 means takes 0, any other refuses it,
// and no flag takes a negative value.
func TestConfigZeroRule(t *testing.T) {
	orderd.FlagSet(new(orderd.Config), io.Discard).VisitAll(func(f *flag.Flag) {
		getter, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		var negative string
		switch getter.Get().(type) {
		case int:
			negative = "-1"
		case time.Duration:
			negative = "-1s"
		default:
			return
		}
		helpSaysZero := strings.Contains(f.Usage, "0:")
		if err := config(t, "--"+f.Name, "0").Validate(); (err == nil) != helpSaysZero {
			t.Errorf("--%s 0: Validate gave %v; the help says what 0 means: %v (%q)", f.Name, err, helpSaysZero, f.Usage)
		}
		if err := config(t, "--"+f.Name, negative).Validate(); err == nil || !strings.Contains(err.Error(), "--"+f.Name) {
			t.Errorf("--%s %s: Validate gave %v, want a refusal naming the flag", f.Name, negative, err)
		}
	})
}
