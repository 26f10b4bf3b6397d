package testenv

import "testing"

// PostgresURL returns the URL of a fresh empty PostgreSQL database, dropped
// when the test ends, or "" when the services script did not start PostgreSQL.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := Service(t, "FLASHORDER_TEST_POSTGRES_URL")
	if u == "" {
		return ""
	}
	return freshDatabase(t, "pgx", u, u)
}
