// Package testenv gives tests the real services that scripts/services.sh
// started, as fresh, isolated databases. The script exports their addresses
// as FLASHORDER_TEST_* variables; with FLASHORDER_REQUIRE_SERVICES=1 (set by
// scripts/test.sh) a missing service fails the test instead of skipping it.
package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Database is one database for a test: its engine name and URL.
type Database struct {
	Engine string
	URL    string
}

// Databases returns a fresh empty database on each engine: SQLite in a
// temporary directory, and PostgreSQL and MariaDB from the services script.
// They are dropped when the test ends.
func Databases(t testing.TB) []Database {
	t.Helper()
	dbs := []Database{{Engine: "sqlite", URL: SQLiteURL(t)}}
	if u := Optional(t, "FLASHORDER_TEST_POSTGRES_URL"); u != "" {
		dbs = append(dbs, Database{Engine: "postgres", URL: freshDatabase(t, u)})
	}
	if u := Optional(t, "FLASHORDER_TEST_MYSQL_URL"); u != "" {
		dbs = append(dbs, Database{Engine: "mysql", URL: freshDatabase(t, u)})
	}
	return dbs
}

// SQLiteURL returns the URL of a new SQLite file in the test's temp dir. Like
// the servers the services script starts, it trades durability on power loss
// for speed (synchronous=normal) unless FLASHORDER_DURABLE=1.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	u := "sqlite://" + filepath.Join(t.TempDir(), "flashorder.db")
	if os.Getenv("FLASHORDER_DURABLE") != "1" {
		u += "?synchronous=normal"
	}
	return u
}

// Service returns the value of the services script's variable name (an
// address or URL). When it is not set, the test fails under
// FLASHORDER_REQUIRE_SERVICES=1 (scripts/test.sh sets it) and is skipped
// otherwise: a test that needs the service never passes without it.
func Service(t testing.TB, name string) string {
	t.Helper()
	v := Optional(t, name)
	if v == "" {
		t.Skipf("%s is not set: this test needs that service (scripts/test.sh starts it)", name)
	}
	return v
}

// Optional is Service for a test that covers the service when it runs and
// does its other work without it: it returns "" instead of skipping (still
// failing under FLASHORDER_REQUIRE_SERVICES=1).
func Optional(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" && os.Getenv("FLASHORDER_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s is not set: run the tests with scripts/test.sh, which starts the services", name)
	}
	if v == "" {
		t.Logf("%s is not set: this run does not cover that service (scripts/test.sh starts it)", name)
	}
	return v
}

// freshDatabase creates a database with a random name on the server at
// serverURL, dropped when the test ends, and returns its URL.
func freshDatabase(t testing.TB, serverURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbURL, err := CreateDatabase(ctx, serverURL, "fo_test_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropDatabase(ctx, serverURL, dbURL); err != nil {
			t.Log(err)
		}
	})
	return dbURL
}
