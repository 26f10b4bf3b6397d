package checkout

import (
	"context"
	"log/slog"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/elect"
)

// SweeperLockKey is the lock whose holder is the one instance that expires
// unpaid orders.
const SweeperLockKey = "flashorder/sweeper"

// DefaultSweepInterval is how often the leading sweeper looks for orders due
// to expire.
const DefaultSweepInterval = 10 * time.Second

// maxBatchesPerSweep bounds one sweep, so that a huge backlog is worked off
// over several ticks instead of in one long burst.
const maxBatchesPerSweep = 100

// Sweeper expires unpaid orders on exactly one instance at a time. Every
// instance runs one; they elect a leader through the Locker: the instance
// holding SweeperLockKey sweeps every Interval until it loses the lock, and
// the others wait in Lock. When the leader dies, its lock is released by the
// backend (session or lease expiry) and a waiting instance takes over.
type Sweeper struct {
	lifecycle *Lifecycle
	locker    flashorder.Locker
	opts      SweeperOptions

	bg elect.Background
}

// SweeperOptions tunes a Sweeper; zero fields take their defaults.
type SweeperOptions struct {
	// Interval is the time between sweeps; the default is
	// DefaultSweepInterval.
	Interval time.Duration
	// Batch is how many orders one transaction expires at most; the default
	// is DefaultExpireBatch.
	Batch int
	// Logger receives leadership changes and errors; the default is
	// slog.Default().
	Logger *slog.Logger
	// OnExpire, when set, is called after each committed batch with the
	// orders it expired.
	OnExpire func(orders []*flashorder.Order)
	// OnLeader, when set, is called with true when this instance becomes the
	// leader and with false when it steps down.
	OnLeader func(leading bool)
	// OnSweep, when set, is called after each sweep of the leader with the
	// number of orders it expired and the error that ended it, if any.
	OnSweep func(expired int, err error)
}

// NewSweeper returns a sweeper that expires orders of lifecycle, elected
// through locker.
func NewSweeper(lifecycle *Lifecycle, locker flashorder.Locker, opts SweeperOptions) *Sweeper {
	if opts.Interval <= 0 {
		opts.Interval = DefaultSweepInterval
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultExpireBatch
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Sweeper{lifecycle: lifecycle, locker: locker, opts: opts}
}

// Start runs the sweeper in the background until Stop.
func (s *Sweeper) Start() { s.bg.Start(s.Run) }

// Stop stops a started sweeper and waits until it stepped down and released
// its lock.
func (s *Sweeper) Stop() { s.bg.Stop() }

// Run competes for leadership and sweeps while leading, until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	elect.Run(ctx, s.locker, SweeperLockKey, elect.Options{Name: "sweeper", Logger: s.opts.Logger, Retry: s.opts.Interval, OnLeader: s.opts.OnLeader}, s.lead)
}

// lead sweeps every Interval until ctx ends (the lock lost, or Stop). Work
// runs under ctx, so that a batch still open when the lock is lost rolls
// back instead of committing.
func (s *Sweeper) lead(ctx context.Context) {
	ticker := time.NewTicker(s.opts.Interval)
	defer ticker.Stop()
	for ctx.Err() == nil {
		s.sweep(ctx)
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
}

// sweep expires due orders batch by batch, until none is due, ctx ends or the
// sweep's bound is reached.
func (s *Sweeper) sweep(ctx context.Context) {
	batch := s.opts.Batch
	total := 0
	var err error
	defer func() {
		if s.opts.OnSweep != nil && ctx.Err() == nil {
			s.opts.OnSweep(total, err)
		}
	}()
	for range maxBatchesPerSweep {
		var expired []*flashorder.Order
		expired, err = s.lifecycle.ExpireDue(ctx, batch)
		if err != nil {
			if ctx.Err() == nil {
				s.opts.Logger.Warn("sweeper: expire orders", "err", err)
			}
			return
		}
		total += len(expired)
		if len(expired) > 0 {
			s.opts.Logger.Debug("sweeper: expired orders", "count", len(expired))
			if s.opts.OnExpire != nil {
				s.opts.OnExpire(expired)
			}
		}
		if len(expired) < batch {
			return
		}
	}
}
