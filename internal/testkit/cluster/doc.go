// Package cluster runs a small flashorder cluster on this machine and breaks
// it: a private set of real services (PostgreSQL, MariaDB, Redis, a 3-node
// ZooKeeper ensemble) started with scripts/services.sh in a state directory of the
// test's own, and N orderd processes on loopback ports that share them. The
// processes are real, so kill -9, SIGTERM, SIGSTOP and SIGCONT are real.
//
// The fault scenarios (faults_test.go, TestFaults) drive load across the
// instances with the loadtest engine, inject one fault each while the load
// runs, and then check the invariants twice: through the loadtest audit
// (every 201 the clients saw read back over the API, stock deltas, keys) and
// directly in the database (see CheckDB, which runs gormdb's
// CheckInvariants). Faults between an orderd and its database go through a
// locktest.Proxy the test controls (Cluster's InstanceArgs give one instance
// its own --db). Set FLASHORDER_FAULTS=long for the
// long form that scripts/faults.sh runs to produce docs/RELIABILITY.md.
package cluster
