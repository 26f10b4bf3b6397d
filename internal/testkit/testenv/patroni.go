package testenv

import "testing"

// PatroniURL returns a multi-host URL (target_session_attrs=read-write) of a
// fresh empty database on the Patroni cluster that the services script
// started, dropped when the test ends; without it the test skips (see
// Service).
func PatroniURL(t testing.TB) string {
	t.Helper()
	return freshPostgres(t, "FLASHORDER_TEST_PATRONI_URL")
}
