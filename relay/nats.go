package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flashorder/flashorder"
)

var _ BatchPublisher = (*NATS)(nil)

// DefaultNATSPrefix is the subject prefix of a nats:// URL without a path.
const DefaultNATSPrefix = "flashorder"

// DefaultNATSTimeout bounds one publish, from the send to JetStream's
// acknowledgement: a slower one counts as a failed attempt.
const DefaultNATSTimeout = 5 * time.Second

// DefaultNATSDuplicateWindow is the duplicate window of the stream the sink
// creates: JetStream drops a message whose Nats-Msg-Id it stored within this
// window. The relay republishes an event only when it was acknowledged but
// not yet marked sent when the relay stopped (a crash, a lost lock): the next
// relay republishes it within seconds, well inside the window. JetStream
// keeps every id of the window in memory, so the window is not longer; a
// republish after it (an admin replay, a relay down for longer) reaches the
// stream again, and consumers drop it by event id.
const DefaultNATSDuplicateWindow = 2 * time.Minute

// NATS publishes events to a NATS JetStream stream. The URL
// nats://host:port[,host:port...]/subject-prefix names the servers (one is
// enough: the client learns the cluster's others) and the subject prefix
// (DefaultNATSPrefix when the path is empty). Each event goes to the subject
// "<prefix>.<type>", for example flashorder.order.created, the body the
// CloudEvent in structured mode, with the headers Nats-Msg-Id (the event
// id: the stream's duplicate window drops a republish) and Content-Type
// application/cloudevents+json. A publish counts only once JetStream
// acknowledged it, that is stored it on a majority of the stream's replicas.
//
// The stream, named after the prefix (StreamName), captures "<prefix>.>".
// The sink creates it at its first publish when it does not exist: file
// storage, DefaultNATSDuplicateWindow, messages kept MaxAge, and 3 replicas
// when the client knows 3 or more servers of the cluster (1 otherwise). An existing stream is
// used as it is, after checking that it captures the prefix; one with fewer
// replicas or in memory is logged as a warning.
//
// One stream keeps each order's events in their sequence: the relay publishes
// a batch of events of different orders at once (PublishBatch: every message
// sent, then every acknowledgement awaited), and an order's next event only
// after the one before it was acknowledged.
//
// The connection is made in the background and remade forever: NewNATS
// does not wait for a server, and a publish while no server answers fails
// at once (the relay retries it with backoff) instead of queueing.
type NATS struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	prefix  string
	stream  string
	servers []string

	// Timeout bounds one publish; the default is DefaultNATSTimeout.
	Timeout time.Duration
	// DuplicateWindow is the duplicate window of a stream the sink
	// creates; the default is DefaultNATSDuplicateWindow.
	DuplicateWindow time.Duration
	// MaxAge is how long a stream the sink creates keeps a message, 0 for
	// ever; the default is DefaultRetention, the outbox's (orderd sets
	// --events-retention).
	MaxAge time.Duration
	// Logger receives the warnings about an existing stream; the default
	// is slog.Default().
	Logger *slog.Logger

	mu    sync.Mutex
	ready bool // the stream exists and captures the prefix
}

// ParseNATSURL returns the server URLs and the subject prefix of
// nats://host:port[,host:port...]/subject-prefix.
func ParseNATSURL(raw string) (servers []string, prefix string, err error) {
	rest, ok := strings.CutPrefix(raw, "nats://")
	if !ok {
		return nil, "", errors.New("relay: NATS URL: want nats://host:port[,host:port]/subject-prefix")
	}
	hosts, prefix, _ := strings.Cut(rest, "/")
	if strings.ContainsAny(prefix, "?#") {
		return nil, "", errors.New("relay: NATS URL: no query or fragment; want nats://host:port[,host:port]/subject-prefix")
	}
	for h := range strings.SplitSeq(hosts, ",") {
		if h == "" || strings.ContainsAny(h, " \t/") {
			return nil, "", fmt.Errorf("relay: NATS URL %q: empty or bad host in the server list", raw)
		}
		servers = append(servers, "nats://"+h)
	}
	if prefix == "" {
		prefix = DefaultNATSPrefix
	}
	for tok := range strings.SplitSeq(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n/") {
			return nil, "", fmt.Errorf("relay: NATS subject prefix %q: want dot-separated tokens without wildcards or spaces", prefix)
		}
	}
	return servers, prefix, nil
}

// StreamName returns the name of the stream for the subject prefix: the
// prefix upper-cased with every character but letters, digits, - and _ as
// _, so flashorder.events gives FLASHORDER_EVENTS.
func StreamName(prefix string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, prefix)
}

// NewNATS returns the JetStream sink of rawURL (see NATS), connecting in the
// background. Close it when done.
func NewNATS(rawURL string) (*NATS, error) {
	servers, prefix, err := ParseNATSURL(rawURL)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.Join(servers, ","),
		nats.Name("flashorder events relay"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		// No buffering while disconnected: a publish fails at once and
		// the relay retries it, instead of a backlog flushed on reconnect.
		nats.ReconnectBufSize(-1),
	)
	if err != nil {
		return nil, fmt.Errorf("relay: NATS connect: %w", err)
	}
	// Acknowledgements not received within the publish timeout are given
	// up on, so that an outage does not pile up pending publishes.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(DefaultNATSTimeout), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("relay: JetStream: %w", err)
	}
	return &NATS{nc: nc, js: js, prefix: prefix, stream: StreamName(prefix), servers: servers,
		Timeout: DefaultNATSTimeout, DuplicateWindow: DefaultNATSDuplicateWindow, MaxAge: DefaultRetention, Logger: slog.Default()}, nil
}

// Subject returns the subject an event of type typ is published to.
func (n *NATS) Subject(typ flashorder.EventType) string { return n.prefix + "." + string(typ) }

// Stream returns the name of the sink's stream.
func (n *NATS) Stream() string { return n.stream }

// Close closes the connection.
func (n *NATS) Close() error { n.nc.Close(); return nil }

// Publish implements flashorder.EventPublisher: it returns nil only once
// JetStream acknowledged the message, a new one or a duplicate the stream
// dropped (stored before, within the duplicate window).
func (n *NATS) Publish(ctx context.Context, e *flashorder.Event, cloudEvent []byte) error {
	ctx, cancel := context.WithTimeout(ctx, n.Timeout)
	defer cancel()
	if err := n.ensureStream(ctx); err != nil {
		return err
	}
	msg := n.message(e, cloudEvent)
	if _, err := n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID), jetstream.WithExpectStream(n.stream)); err != nil {
		return fmt.Errorf("relay: JetStream publish to %s: %w", msg.Subject, err)
	}
	return nil
}

// PublishBatch implements BatchPublisher: it sends every event without
// waiting (JetStream's asynchronous publish), then waits for each
// acknowledgement, all within Timeout. errs[i] is nil only once JetStream
// acknowledged evs[i].
func (n *NATS) PublishBatch(ctx context.Context, evs []*flashorder.Event, bodies [][]byte) []error {
	errs := make([]error, len(evs))
	ctx, cancel := context.WithTimeout(ctx, n.Timeout)
	defer cancel()
	if err := n.ensureStream(ctx); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	futures := make([]jetstream.PubAckFuture, len(evs))
	for i, e := range evs {
		msg := n.message(e, bodies[i])
		f, err := n.js.PublishMsgAsync(msg, jetstream.WithMsgID(e.ID), jetstream.WithExpectStream(n.stream))
		if err != nil {
			errs[i] = fmt.Errorf("relay: JetStream publish to %s: %w", msg.Subject, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("relay: JetStream publish to %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("relay: JetStream publish to %s: no acknowledgement: %w", f.Msg().Subject, ctx.Err())
		}
	}
	return errs
}

// message returns the NATS message of e.
func (n *NATS) message(e *flashorder.Event, cloudEvent []byte) *nats.Msg {
	msg := nats.NewMsg(n.Subject(e.Type))
	msg.Data = cloudEvent
	msg.Header.Set("Content-Type", "application/cloudevents+json")
	return msg
}

// replicas is the stream's replica count the sink asks for: 3 when the
// client knows 3 or more servers (given or discovered), else 1.
func (n *NATS) replicas() int {
	known := slices.Clone(n.servers)
	known = append(known, n.nc.Servers()...)
	for i, s := range known {
		known[i] = strings.TrimPrefix(s, "nats://")
	}
	slices.Sort(known)
	if len(slices.Compact(known)) >= 3 {
		return 3
	}
	return 1
}

// ensureStream creates the stream, or checks the existing one, once.
func (n *NATS) ensureStream(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ready {
		return nil
	}
	want := n.prefix + ".>"
	s, err := n.js.Stream(ctx, n.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = n.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        n.stream,
			Description: "flashorder order events (CloudEvents), published by the events relay",
			Subjects:    []string{want},
			Storage:     jetstream.FileStorage,
			Replicas:    n.replicas(),
			Duplicates:  n.DuplicateWindow,
			MaxAge:      n.MaxAge,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // created meanwhile by another relay
			s, err = n.js.Stream(ctx, n.stream)
		}
	}
	if err != nil {
		return fmt.Errorf("relay: JetStream stream %s: %w", n.stream, err)
	}
	cfg := s.CachedInfo().Config
	if !slices.Contains(cfg.Subjects, want) {
		return fmt.Errorf("relay: JetStream stream %s exists with subjects %v, not %s", n.stream, cfg.Subjects, want)
	}
	if r := n.replicas(); cfg.Replicas < r || cfg.Storage != jetstream.FileStorage {
		n.Logger.Warn("events: the JetStream stream exists with weaker settings than the relay creates", "stream", n.stream,
			"replicas", cfg.Replicas, "want_replicas", r, "storage", cfg.Storage.String())
	}
	n.ready = true
	return nil
}
