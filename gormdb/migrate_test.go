package gormdb_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestOpenConcurrently opens one fresh database from several goroutines at
// once, as instances of a cluster that start together do: every Open must
// succeed (the schema migration is serialised by a database lock).
func TestOpenConcurrently(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		if d.Engine == gormdb.SQLite {
			continue // one file, one process: nothing to race
		}
		t.Run(d.Engine, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const n = 6
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db, err := gormdb.Open(ctx, d.URL, gormdb.Options{MaxConns: 4})
					if err != nil {
						errs <- err
						return
					}
					errs <- db.Close()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
}
