package cluster

import (
	"context"
	"fmt"

	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// CreateDatabase creates an empty database with a random name on the
// PostgreSQL or MySQL/MariaDB server at serverURL (a postgres:// or mysql://
// URL) and returns its URL. The database lives as long as the server's state
// directory.
func CreateDatabase(ctx context.Context, serverURL string) (string, error) {
	return testenv.CreateDatabase(ctx, serverURL, "fo_faults_")
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
