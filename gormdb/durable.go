package gormdb

import "context"

// WaitDurable returns once everything committed on the database so far
// would survive the loss of its server: on PostgreSQL it commits a
// transaction that holds a transaction id (and so writes a commit record),
// which waits, under synchronous replication, until the synchronous
// standbys have the WAL up to it, and with it every earlier commit. It is
// for answers that read an order which may have been committed without that
// wait (a commit whose client gave up: PostgreSQL keeps it locally); see
// checkout.Idempotent.Durable. Elsewhere a commit is durable once it
// returns, and WaitDurable returns nil at once. When ctx ends first, the
// wait's connection is closed, never reported as a success.
func (db *DB) WaitDurable(ctx context.Context) error {
	return db.dialect.waitDurable(ctx, db)
}
