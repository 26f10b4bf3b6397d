package testenv

import "testing"

// PostgresURL returns the URL of a fresh empty PostgreSQL database, dropped
// when the test ends, or "" when the services script did not start PostgreSQL.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return freshPostgres(t, "FLASHORDER_TEST_POSTGRES_URL")
}

// freshPostgres returns a fresh database on the PostgreSQL server named by
// the service variable name, or "" when it is unset.
func freshPostgres(t testing.TB, name string) string {
	t.Helper()
	u := Service(t, name)
	if u == "" {
		return ""
	}
	return freshDatabase(t, "pgx", u, u)
}
