package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// CreateDatabase creates an empty database with a random name on the
// PostgreSQL server at serverURL (a postgres:// URL) and returns its URL. The
// database lives as long as the server's state directory.
func CreateDatabase(ctx context.Context, serverURL string) (string, error) {
	db, err := sql.Open("pgx", serverURL)
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
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DBState is what CheckDB read from the database.
type DBState struct {
	// Orders is the number of orders, ActiveOrders those created or paid.
	Orders, ActiveOrders int64
	// Violations lists every invariant the database breaks.
	Violations []string
}

// CheckDB checks the invariants directly in the PostgreSQL database at
// dbURL, apart from the API: no oversell (for every product restocked =
// available + units in active orders, available >= 0), every id in answered
// (the 201s the clients saw) is an order, no Idempotency-Key has two orders,
// every order is whole (it has items and its total is theirs), and, when
// perUserLimit > 0, no user holds more active units of a product than that.
func CheckDB(ctx context.Context, dbURL string, answered []string, perUserLimit int64) (*DBState, error) {
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		return nil, fmt.Errorf("cluster: open %s: %w", dbURL, err)
	}
	defer db.Close()
	st := &DBState{}
	bad := func(format string, args ...any) { st.Violations = append(st.Violations, fmt.Sprintf(format, args...)) }

	if err := db.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE status IN ('created','paid')) FROM orders`).
		Scan(&st.Orders, &st.ActiveOrders); err != nil {
		return nil, fmt.Errorf("cluster: count orders: %w", err)
	}

	rows, err := db.QueryContext(ctx, `
		SELECT p.sku, p.stock, p.restocked, COALESCE(s.sold, 0)
		FROM products p LEFT JOIN (
			SELECT i.sku, sum(i.quantity) AS sold FROM order_items i JOIN orders o ON o.id = i.order_id
			WHERE o.status IN ('created','paid') GROUP BY i.sku) s ON s.sku = p.sku`)
	if err != nil {
		return nil, fmt.Errorf("cluster: stock check: %w", err)
	}
	for rows.Next() {
		var sku string
		var stock, restocked, sold int64
		if err := rows.Scan(&sku, &stock, &restocked, &sold); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cluster: stock check: %w", err)
		}
		if stock < 0 || restocked != stock+sold {
			bad("oversell: product %s has restocked %d, available %d, sold %d", sku, restocked, stock, sold)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cluster: stock check: %w", err)
	}
	rows.Close()

	// Every answered id exists, in chunks.
	for len(answered) > 0 {
		n := min(len(answered), 5000)
		chunk := answered[:n]
		answered = answered[n:]
		var found int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE id = ANY($1)`, chunk).Scan(&found); err != nil {
			return nil, fmt.Errorf("cluster: look up answered orders: %w", err)
		}
		if found != len(chunk) {
			bad("lost order: %d of %d orders answered 201 are not in the database", len(chunk)-found, len(chunk))
		}
	}

	var n int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT idempotency_key_hash FROM orders
		WHERE idempotency_key_hash IS NOT NULL GROUP BY idempotency_key_hash HAVING count(*) > 1) d`).Scan(&n); err != nil {
		return nil, fmt.Errorf("cluster: duplicate keys: %w", err)
	}
	if n > 0 {
		bad("double order: %d Idempotency-Keys have more than one order", n)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders o LEFT JOIN (
			SELECT order_id, sum(quantity * price_cents) AS total FROM order_items GROUP BY order_id) i ON i.order_id = o.id
		WHERE i.total IS NULL OR i.total <> o.total_cents`).Scan(&n); err != nil {
		return nil, fmt.Errorf("cluster: partial orders: %w", err)
	}
	if n > 0 {
		bad("partial order: %d orders have no items or a total that is not their items'", n)
	}
	if perUserLimit > 0 {
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT o.user_id, i.sku FROM orders o
				JOIN order_items i ON i.order_id = o.id WHERE o.status IN ('created','paid')
				GROUP BY o.user_id, i.sku HAVING sum(i.quantity) > $1) d`, perUserLimit).Scan(&n); err != nil {
			return nil, fmt.Errorf("cluster: per-user limit: %w", err)
		}
		if n > 0 {
			bad("per-user limit: %d users hold more than %d units of a product", n, perUserLimit)
		}
	}
	return st, nil
}

// OrdersWithKeys returns how many orders in the database at dbURL carry one of
// the Idempotency-Keys (stored as the hex SHA-256 of the key).
func OrdersWithKeys(ctx context.Context, dbURL string, keys []string) (int, error) {
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		return 0, fmt.Errorf("cluster: open %s: %w", dbURL, err)
	}
	defer db.Close()
	hashes := make([]string, len(keys))
	for i, k := range keys {
		sum := sha256.Sum256([]byte(k))
		hashes[i] = hex.EncodeToString(sum[:])
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE idempotency_key_hash = ANY($1)`, hashes).Scan(&n); err != nil {
		return 0, fmt.Errorf("cluster: orders by key: %w", err)
	}
	return n, nil
}
