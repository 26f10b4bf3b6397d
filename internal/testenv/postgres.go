package testenv

import "testing"

// PostgresURL returns the URL of a fresh empty PostgreSQL database, dropped
// when the test ends; without PostgreSQL the test skips (see Service).
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := Service(t, "FLASHORDER_TEST_POSTGRES_URL")
	return freshDatabase(t, "pgx", u, u)
}
