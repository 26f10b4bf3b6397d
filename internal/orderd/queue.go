package orderd

import (
	"context"
	"crypto/rand"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/metrics"
	"github.com/flashorder/flashorder/queue"
	"github.com/flashorder/flashorder/redis"
)

// queueStore is where the waiting room's state lives: --queue-store (memory,
// one Redis or a Redis Cluster), by default the --idempotency Redis, so that
// every instance serves one queue, else memory.
func (c Config) queueStore() string {
	if c.QueueStore != "" {
		return c.QueueStore
	}
	if scheme(c.Idempotency) == "redis" {
		return c.Idempotency
	}
	return "memory"
}

// onRedis reports whether a store flag's value names Redis: one server
// (redis://) or a cluster (redis+cluster://, --queue-store only).
func onRedis(raw string) bool { return scheme(raw) == "redis" || redis.IsClusterURL(raw) }

// lookupCatalog is the waiting room's view of the product cache: Lookup,
// which serves a product from memory even when this instance changed its
// stock (the room reads the admission, the sale and the window; the stock it
// admits against comes fresh from the database). Product would read the
// product again after every order this instance takes.
type lookupCatalog struct{ cache *checkout.ProductCache }

// Product implements queue.Catalog.
func (l lookupCatalog) Product(ctx context.Context, sku string) (*flashorder.Product, error) {
	return l.cache.Lookup(ctx, sku)
}

// roomCatalog returns what the waiting room reads products through: the
// product cache's Lookup when it is on (--product-cache-ttl), else path's
// product reader (the database).
func (c Config) roomCatalog(path orderPath) queue.Catalog {
	if path.gate != nil && c.ProductCacheTTL > 0 {
		return lookupCatalog{path.gate.Products()}
	}
	return path.products
}

// startRoom starts the waiting room on its store (Redis or a Redis Cluster,
// on a client of its own, or memory),
// reading products through catalog for the crowd and fresh from db for the
// admission bound. It returns the room and its metrics, for the caller to
// register on the server's registry.
func (m *Main) startRoom(db *gormdb.DB, catalog queue.Catalog) (*queue.Room, *metrics.QueueMetrics, error) {
	cfg := &m.Config
	opts := queue.Options{IdleTimeout: cfg.QueueIdle, AdmissionTTL: cfg.AdmissionTTL}
	var store queue.Store
	if raw := cfg.queueStore(); onRedis(raw) {
		// A client of its own: its pipelines carry a crowd's scripts and
		// wait longer than the order path's calls (redis.DefaultQueueTimeout).
		// On a cluster each queue's keys share one hash tag, so its scripts
		// run on one slot, and a pipeline goes to every node it needs.
		c, err := redis.OpenUniversalClient(redisKey(raw), redis.DefaultQueueTimeout)
		if err != nil {
			return nil, nil, err
		}
		m.queueClient = c
		store = redis.NewQueueStore(c, opts)
	} else {
		store = inmem.NewQueueStore(opts)
	}
	secret := []byte(cfg.AdmissionSecret)
	if len(secret) == 0 {
		secret = make([]byte, queue.MinSecretLen)
		_, _ = rand.Read(secret)
		if onRedis(cfg.queueStore()) {
			m.Logger.Warn("no --admission-secret with the waiting room on Redis: this instance signs admission tokens with a key of its own, " +
				"which the other instances refuse (403 admission_required); give every instance the same --admission-secret")
		}
	}
	signer, err := queue.NewSigner(secret)
	if err != nil {
		return nil, nil, err
	}
	qm := metrics.NewQueueMetrics()
	room := queue.NewRoom(store, signer, catalog, db, queue.RoomOptions{Interval: cfg.AdmissionInterval, Logger: m.Logger, Observe: qm.Observe,
		IdleTimeout: cfg.QueueIdle})
	room.Start()
	return room, qm, nil
}
