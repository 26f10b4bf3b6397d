package testenv

import "testing"

// PostgresURL returns the URL of a fresh empty PostgreSQL database, dropped
// when the test ends; without PostgreSQL the test skips (see Service).
func PostgresURL(t testing.TB) string {
	t.Helper()
	return freshPostgres(t, "FLASHORDER_TEST_POSTGRES_URL")
}

// freshPostgres returns a fresh database on the PostgreSQL server named by
// the service variable name; without it the test skips (see Service).
func freshPostgres(t testing.TB, name string) string {
	t.Helper()
	return freshDatabase(t, Service(t, name))
}
