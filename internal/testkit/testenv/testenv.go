// Package testenv gives tests the real services that scripts/services.sh
// started, as fresh, isolated databases. The script exports their addresses
// as FLASHORDER_TEST_* variables; with FLASHORDER_REQUIRE_SERVICES=1 (set by
// scripts/test.sh) a missing service fails the test instead of skipping it.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers the "mysql" database/sql driver
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/flashorder/flashorder/gormdb"
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
		dbs = append(dbs, Database{Engine: "postgres", URL: freshDatabase(t, "pgx", u, u)})
	}
	if u := Optional(t, "FLASHORDER_TEST_MYSQL_URL"); u != "" {
		dbs = append(dbs, Database{Engine: "mysql", URL: freshDatabase(t, "mysql", mysqlDSN(t, u), u)})
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
// adminURL and returns baseURL pointing at it.
func freshDatabase(t testing.TB, driver, dsn, baseURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("testenv: open %s: %v", driver, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "fo_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drop := "DROP DATABASE IF EXISTS " + name
		if driver == "pgx" {
			drop += " WITH (FORCE)"
		}
		if _, err := admin.ExecContext(ctx, drop); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
		admin.Close()
	})
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// mysqlDSN turns a mysql:// URL into a go-sql-driver DSN for the MariaDB that
// the services script starts.
func mysqlDSN(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return gormdb.MySQLDSN(u, "tx_isolation")
}
