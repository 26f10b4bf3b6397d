package cluster

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

// CreateDatabase creates an empty database with a random name on the
// PostgreSQL or MySQL/MariaDB server at serverURL (a postgres:// or mysql://
// URL) and returns its URL. The database lives as long as the server's state
// directory.
func CreateDatabase(ctx context.Context, serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	driver, dsn := "pgx", serverURL
	if u.Scheme == gormdb.MySQL || u.Scheme == "mariadb" {
		// tx_isolation: MariaDB before 11.1 knows no other name, and the
		// isolation level does not matter for CREATE DATABASE.
		driver, dsn = "mysql", gormdb.MySQLDSN(u, "tx_isolation")
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return "", fmt.Errorf("cluster: open %s: %w", serverURL, err)
	}
	defer db.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "fo_faults_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("cluster: create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DBState is what CheckDB read from the database.
type DBState = gormdb.Invariants

// CheckDB checks the invariants directly in the database at dbURL, apart
// from the API, with gormdb's CheckInvariants: no oversell (stock segments
// included), every id in answered (the 201s the clients saw) is an order, no
// Idempotency-Key has two orders, every order is whole, no user over a
// product's per-user limit.
func CheckDB(ctx context.Context, dbURL string, answered []string) (*DBState, error) {
	db, err := gormdb.Open(ctx, dbURL, gormdb.Options{})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	defer db.Close()
	return db.CheckInvariants(ctx, answered)
}

// OrdersWithKeys returns how many orders in the database at dbURL carry one of
// the Idempotency-Keys.
func OrdersWithKeys(ctx context.Context, dbURL string, keys []string) (int64, error) {
	db, err := gormdb.Open(ctx, dbURL, gormdb.Options{})
	if err != nil {
		return 0, fmt.Errorf("cluster: %w", err)
	}
	defer db.Close()
	return db.CountOrdersWithKeys(ctx, keys)
}
