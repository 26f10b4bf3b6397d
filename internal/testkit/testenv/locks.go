package testenv

import (
	"strings"
	"testing"
)

// ZooKeeperAddrs returns the single ZooKeeper server's address from the
// services script; without one the test skips (see Service).
func ZooKeeperAddrs(t testing.TB) []string {
	t.Helper()
	return splitAddrs(Service(t, "FLASHORDER_TEST_ZK_ADDRS"))
}

// ZooKeeperEnsembleAddrs returns the addresses of the 3-node ZooKeeper
// ensemble (services.sh start zk3); without it the test skips (see Service).
func ZooKeeperEnsembleAddrs(t testing.TB) []string {
	t.Helper()
	return splitAddrs(Service(t, "FLASHORDER_TEST_ZK3_ADDRS"))
}

// EtcdEndpoints returns the etcd server's client address; without one the
// test skips (see Service).
func EtcdEndpoints(t testing.TB) []string {
	t.Helper()
	return splitAddrs(Service(t, "FLASHORDER_TEST_ETCD_ENDPOINTS"))
}

// OptionalAddrs returns the addresses in the services script's variable
// name, or nil when it is not set (see Optional).
func OptionalAddrs(t testing.TB, name string) []string {
	t.Helper()
	return splitAddrs(Optional(t, name))
}

func splitAddrs(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}
