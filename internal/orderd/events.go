package orderd

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/metrics"
	"github.com/flashorder/flashorder/relay"
)

// startRelay starts publishing db's order events to the --events webhook, on
// the instance elected through locker, and registers the relay's metrics on
// reg. With --events off it starts nothing and returns nil: no event is
// written either (gormdb.Options.Events).
//
// The relay is elected like the sweeper, through the --lock backend (unless
// Main.SweeperLocker is set): with zk://, etcd:// or redis:// one instance of
// all that share it relays. With memory every orderd on the database relays:
// deliveries stay at least once (a consumer drops repeats by event id), but
// two relays may deliver one event twice and settle it once, the other's
// settlement refused by the outbox.
func (m *Main) startRelay(db *gormdb.DB, locker flashorder.Locker, reg prometheus.Registerer) (*relay.Relay, error) {
	cfg := &m.Config
	if cfg.Events == "" {
		return nil, nil
	}
	sink, err := relay.NewWebhook(cfg.Events, cfg.EventsSecret)
	if err != nil {
		return nil, err
	}
	rm := metrics.NewRelayMetrics()
	if err := rm.Register(reg); err != nil {
		return nil, err
	}
	if scheme(cfg.Lock) == "memory" && db.Engine() != gormdb.SQLite {
		m.Logger.Warn("--events with --lock memory: every orderd on this database runs its own events relay; use a lock service so that one relays")
	}
	r := relay.New(db, sink, locker, rm.Options(relay.Options{MaxAttempts: cfg.EventsMaxAttempts, Retention: cfg.EventsRetention, Logger: m.Logger}))
	r.Start()
	return r, nil
}
