package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"

	_ "github.com/go-sql-driver/mysql" // registers the "mysql" database/sql driver
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/flashorder/flashorder/gormdb"
)

// CreateDatabase creates an empty database named prefix and 12 random hex
// digits on the PostgreSQL or MySQL/MariaDB server at serverURL (a
// postgres:// or mysql:// URL, multi-host included) and returns its URL.
func CreateDatabase(ctx context.Context, serverURL, prefix string) (string, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if err := onServer(ctx, serverURL, func(db *sql.DB, _ string) error {
		_, err := db.ExecContext(ctx, "CREATE DATABASE "+name)
		return err
	}); err != nil {
		return "", fmt.Errorf("testenv: create database %s: %w", name, err)
	}
	u, _ := url.Parse(serverURL) // onServer parsed it
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops the database of dbURL, one that CreateDatabase made on
// the server at serverURL, closing its sessions on PostgreSQL.
func DropDatabase(ctx context.Context, serverURL, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	name := u.Path[1:]
	return onServer(ctx, serverURL, func(db *sql.DB, driver string) error {
		drop := "DROP DATABASE IF EXISTS " + name
		if driver == "pgx" {
			drop += " WITH (FORCE)"
		}
		if _, err := db.ExecContext(ctx, drop); err != nil {
			return fmt.Errorf("testenv: drop database %s: %w", name, err)
		}
		return nil
	})
}

// onServer runs fn on a connection pool to the server at serverURL, with the
// database/sql driver's name.
func onServer(ctx context.Context, serverURL string, fn func(db *sql.DB, driver string) error) error {
	u, err := url.Parse(serverURL)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	driver, dsn := "pgx", serverURL
	if u.Scheme == gormdb.MySQL || u.Scheme == "mariadb" {
		// tx_isolation: MariaDB before 11.1 knows no other name, and the
		// isolation level does not matter for CREATE or DROP DATABASE.
		driver, dsn = "mysql", gormdb.MySQLDSN(u, "tx_isolation")
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return fmt.Errorf("testenv: open %s: %w", u.Redacted(), err)
	}
	defer db.Close()
	return fn(db, driver)
}
