package testenv

import (
	"context"

	"github.com/flashorder/flashorder/loadtest/freshdb"
)

// CreateDatabase creates an empty database named prefix and 12 random hex
// digits on the PostgreSQL or MySQL/MariaDB server at serverURL (a
// postgres:// or mysql:// URL, multi-host included) and returns its URL:
// freshdb.Create, which orderbench compare --fresh-db uses too.
func CreateDatabase(ctx context.Context, serverURL, prefix string) (string, error) {
	return freshdb.Create(ctx, serverURL, prefix)
}

// DropDatabase drops the database of dbURL, one that CreateDatabase made on
// the server at serverURL, closing its sessions on PostgreSQL.
func DropDatabase(ctx context.Context, serverURL, dbURL string) error {
	return freshdb.Drop(ctx, serverURL, dbURL)
}
