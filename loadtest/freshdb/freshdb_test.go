package freshdb_test

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/loadtest/freshdb"
)

// TestCreateAndDrop runs against PostgreSQL and MariaDB: two databases made
// from one prefix have different names, each can be connected to until it
// is dropped, and dropping it again is no error.
func TestCreateAndDrop(t *testing.T) {
	for _, tc := range []struct{ engine, env string }{
		{"postgres", "FLASHORDER_TEST_POSTGRES_URL"},
		{"mysql", "FLASHORDER_TEST_MYSQL_URL"},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			server := testenv.Service(t, tc.env)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var made []string
			for range 2 {
				db, err := freshdb.Create(ctx, server, "fo_freshdb_")
				if err != nil {
					t.Fatal(err)
				}
				made = append(made, db)
			}
			if made[0] == made[1] || !strings.Contains(made[0], "/fo_freshdb_") {
				t.Fatalf("created %v", made)
			}
			for _, db := range made {
				if err := ping(ctx, db); err != nil {
					t.Errorf("the new database %s: %v", db, err)
				}
				if err := freshdb.Drop(ctx, server, db); err != nil {
					t.Fatal(err)
				}
				if err := ping(ctx, db); err == nil {
					t.Errorf("%s answers after it was dropped", db)
				}
				if err := freshdb.Drop(ctx, server, db); err != nil {
					t.Errorf("dropping it again: %v", err)
				}
			}
		})
	}
}

// TestRefusesOtherEngines: SQLite has no server to make databases on.
func TestRefusesOtherEngines(t *testing.T) {
	if _, err := freshdb.Create(context.Background(), "sqlite:///tmp/x.db", "fo_"); err == nil ||
		!strings.Contains(err.Error(), "not a postgres:// or mysql:// URL") {
		t.Fatalf("err %v", err)
	}
}

// ping connects to the database of dbURL.
func ping(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	driver, dsn := "pgx", dbURL
	if u.Scheme == "mysql" {
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.User, cfg.DBName = "tcp", u.Host, u.User.Username(), strings.TrimPrefix(u.Path, "/")
		cfg.Passwd, _ = u.User.Password()
		driver, dsn = "mysql", cfg.FormatDSN()
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}
