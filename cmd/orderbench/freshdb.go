package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flashorder/flashorder/loadtest/freshdb"
)

// freshDatabase creates an empty database for strategy's run on the server
// of dbURL (a postgres:// or mysql:// URL whose user may create databases)
// and returns the URL of the new database and a function that drops it.
func freshDatabase(ctx context.Context, dbURL, strategy string) (string, func() error, error) {
	fresh, err := freshdb.Create(ctx, dbURL, databasePrefix(strategy))
	if err != nil {
		return "", nil, fmt.Errorf("--fresh-db: %w", err)
	}
	drop := func() error {
		// Its own context: the database goes even when the run was
		// interrupted.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return freshdb.Drop(ctx, dbURL, fresh)
	}
	return fresh, drop, nil
}

// databasePrefix begins the names of strategy's databases.
func databasePrefix(strategy string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(strategy))
	return "orderbench_" + clean + "_"
}
