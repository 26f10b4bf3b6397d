// Package freshdb creates empty databases with random names on a PostgreSQL
// or MySQL/MariaDB server, and drops them: orderbench compare --fresh-db
// runs each strategy on one, and the integration tests each get their own.
// It is not under internal/testkit because orderbench, a program users run,
// needs it too.
package freshdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// Create creates an empty database named prefix and 12 random hex digits on
// the server at serverURL (a postgres://, postgresql://, mysql:// or
// mariadb:// URL whose user may create databases; PostgreSQL's multi-host
// URLs included) and returns its URL: serverURL with the new database's name
// as its path.
func Create(ctx context.Context, serverURL, prefix string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("freshdb: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if err := onServer(ctx, u, func(db *sql.DB, _ string) error {
		_, err := db.ExecContext(ctx, "CREATE DATABASE "+name)
		return err
	}); err != nil {
		return "", fmt.Errorf("freshdb: create database %s: %w", name, err)
	}
	nu := *u
	nu.Path = "/" + name
	return nu.String(), nil
}

// Drop drops the database of dbURL, one that Create made on the server at
// serverURL; on PostgreSQL it closes the database's sessions first.
func Drop(ctx context.Context, serverURL, dbURL string) error {
	u, err := url.Parse(serverURL)
	if err != nil {
		return fmt.Errorf("freshdb: %w", err)
	}
	du, err := url.Parse(dbURL)
	if err != nil {
		return fmt.Errorf("freshdb: %w", err)
	}
	name := du.Path[min(1, len(du.Path)):]
	if err := onServer(ctx, u, func(db *sql.DB, driver string) error {
		drop := "DROP DATABASE IF EXISTS " + name
		if driver == "pgx" {
			drop += " WITH (FORCE)"
		}
		_, err := db.ExecContext(ctx, drop)
		return err
	}); err != nil {
		return fmt.Errorf("freshdb: drop database %s: %w", name, err)
	}
	return nil
}

// onServer runs fn on a connection pool to the server at u, with the
// database/sql driver's name.
func onServer(ctx context.Context, u *url.URL, fn func(db *sql.DB, driver string) error) error {
	var driver, dsn string
	switch u.Scheme {
	case "postgres", "postgresql":
		driver, dsn = "pgx", u.String()
	case "mysql", "mariadb":
		// No session variables: CREATE and DROP DATABASE need none, and
		// MySQL and MariaDB do not name the isolation level alike.
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.User = "tcp", u.Host, u.User.Username()
		cfg.Passwd, _ = u.User.Password()
		if d, err := time.ParseDuration(u.Query().Get("timeout")); err == nil {
			cfg.Timeout = d
		}
		driver, dsn = "mysql", cfg.FormatDSN()
	default:
		return fmt.Errorf("%s is not a postgres:// or mysql:// URL", u.Redacted())
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return fmt.Errorf("open %s: %w", u.Redacted(), err)
	}
	defer db.Close()
	return fn(db, driver)
}
