package testenv

import (
	"strings"
	"testing"
)

// ZooKeeperAddrs returns the single ZooKeeper server's address from the
// services script, or nil when it did not start one (see Service).
func ZooKeeperAddrs(t testing.TB) []string {
	t.Helper()
	return splitAddrs(Service(t, "FLASHORDER_TEST_ZK_ADDRS"))
}

// ZooKeeperEnsembleAddrs returns the addresses of the 3-node ZooKeeper
// ensemble (services.sh start zk3), or nil (see Service).
func ZooKeeperEnsembleAddrs(t testing.TB) []string {
	t.Helper()
	return splitAddrs(Service(t, "FLASHORDER_TEST_ZK3_ADDRS"))
}

// EtcdEndpoints returns the etcd server's client address, or nil (see
// Service).
func EtcdEndpoints(t testing.TB) []string {
	t.Helper()
	return splitAddrs(Service(t, "FLASHORDER_TEST_ETCD_ENDPOINTS"))
}

func splitAddrs(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}
