package orderd

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/metrics"
	"github.com/flashorder/flashorder/relay"
)

// startRelay starts publishing db's order events to the --events sink, on
// the instance elected through locker, and registers the relay's metrics on
// reg. With --events off it starts nothing and returns nil: no event is
// written either (gormdb.Options.Events). The sink is picked by the URL's
// scheme: nats:// publishes to NATS JetStream (relay.NATS, connecting in the
// background: orderd starts, and takes orders, while NATS is down, the
// events waiting in the outbox), anything else is a webhook (relay.Webhook).
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
	var sink flashorder.EventPublisher
	if strings.HasPrefix(cfg.Events, "nats://") {
		ns, err := relay.NewNATS(cfg.Events)
		if err != nil {
			return nil, err
		}
		ns.Logger, ns.MaxAge = m.Logger, cfg.EventsRetention
		m.eventsSink = ns
		sink = ns
	} else {
		wh, err := relay.NewWebhook(cfg.Events, cfg.EventsSecret)
		if err != nil {
			return nil, err
		}
		sink = wh
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
