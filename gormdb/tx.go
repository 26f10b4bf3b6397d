package gormdb

import (
	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

var _ flashorder.Tx = (*tx)(nil)

// tx implements flashorder.Tx inside one GORM transaction. Its methods are
// filed by the group of flashorder.Tx they implement: product.go, stock.go,
// segment.go, quota.go, order.go, lifecycle.go and fence.go.
//
// The bulk statements of the group-commit engine (LockProducts, TakeStocks,
// Quotas, AddQuotas, InsertOrders) bypass GORM's reflection and run on the
// transaction's database/sql handle, in the dialect's form: one statement
// for each step, whatever the batch holds.
type tx struct {
	g       *gorm.DB
	dialect dialect
	// events makes order changes write their events (Options.Events).
	events bool
	// own is the connection of a transaction that InTx runs itself
	// (PostgreSQL, pipeline_postgres.go); nil on the other engines.
	own *txConn
}

// conn returns the transaction's database/sql handle.
func (t *tx) conn() sqlConn {
	return t.g.Statement.ConnPool
}
