package relay_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/relay"
)

// natsSink returns the JetStream sink to the cluster at servers (a
// services-script URL, nats://h:p,h:p,h:p) with a prefix of the test's own,
// and a JetStream client to read its stream, which is deleted when the test
// ends.
func natsSink(t *testing.T, servers string) (*relay.NATS, jetstream.JetStream) {
	t.Helper()
	prefix := "fotest." + strings.ReplaceAll(testenv.Unique("relay"), "-", "_")
	sink, err := relay.NewNATS(servers + "/" + prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	nc, err := nats.Connect(strings.TrimPrefix(servers, "nats://"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, sink.Stream()); err != nil {
			t.Logf("delete stream %s: %v", sink.Stream(), err)
		}
		nc.Close()
	})
	return sink, js
}

// readStream reads every message of the stream, oldest first, as a
// consumer does, into a receiver (kept once per event id, as a consumer
// deduplicates), and returns it with the number of messages read.
func readStream(t *testing.T, js jetstream.JetStream, stream string) (*receiver, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Right after a node restarted, the JetStream API may not answer for a
	// moment (no responders), to the info request or to the consumer's
	// creation that follows it: ask again until both answer.
	var s jetstream.Stream
	var info *jetstream.StreamInfo
	var cons jetstream.Consumer
	var err error
	testenv.WaitFor(t, "the stream's info and an ordered consumer", 30*time.Second, func() bool {
		if s, err = js.Stream(ctx, stream); err == nil {
			if info, err = s.Info(ctx); err == nil {
				cons, err = s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
			}
		}
		if err != nil {
			t.Logf("reading stream %s: %v (asking again)", stream, err)
		}
		return err == nil
	})
	total := int(info.State.Msgs)
	rc := &receiver{t: t, deliveries: map[string]int{}, byOrder: map[string][]float64{}, kept: map[string]bool{}}
	// A fetch may meet the same moment after a restart: it is asked again
	// until the context's deadline (the ordered consumer resumes after the
	// last message it delivered, so nothing is read twice).
	for n := 0; n < total; {
		batch, err := cons.Fetch(min(total-n, 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			t.Logf("fetching from stream %s: %v (asking again)", stream, err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			id := m.Headers().Get(jetstream.MsgIDHeader)
			var ce map[string]any
			if err := json.Unmarshal(m.Data(), &ce); err != nil {
				t.Fatalf("message %s is not JSON: %v", m.Subject(), err)
			}
			if ce["id"] != id {
				t.Errorf("Nats-Msg-Id %s, CloudEvent id %v", id, ce["id"])
			}
			if !strings.HasSuffix(m.Subject(), "."+ce["type"].(string)) {
				t.Errorf("subject %s for type %v", m.Subject(), ce["type"])
			}
			rc.deliveries[id]++
			if !rc.kept[id] {
				rc.kept[id] = true
				rc.events = append(rc.events, ce)
				rc.byOrder[ce["subject"].(string)] = append(rc.byOrder[ce["subject"].(string)], ce["orderseq"].(float64))
			}
		}
		if err := batch.Error(); err != nil {
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			t.Logf("fetching from stream %s: %v (asking again)", stream, err)
			n += got
			continue
		}
		if got == 0 {
			t.Fatalf("read %d of the stream's %d messages, then nothing", n, total)
		}
		n += got
	}
	return rc, total
}

// TestNATSRelay publishes an outbox to the 3-node JetStream cluster of the
// services script: every event is in the stream once, acknowledged, in
// per-order order, on its type's subject, and the stream the sink created is
// R3 on file with the documented duplicate window.
func TestNATSRelay(t *testing.T) {
	servers := testenv.NATSURL(t)
	db, orders := outboxWithOrders(t, testenv.SQLiteURL(t), 30)
	sink, js := natsSink(t, servers)
	var published atomic.Int64
	opts := fastOptions()
	opts.OnPublished = func() { published.Add(1) }
	r := startRelay(t, db, sink, newLocker(t), opts)
	waitSettled(t, db)
	r.Stop()
	rc, msgs := readStream(t, js, sink.Stream())
	checkStream(t, db, rc, orders, 40)
	if msgs != 40 || published.Load() != 40 {
		t.Errorf("stream holds %d messages, relay published %d, want 40", msgs, published.Load())
	}
	s, err := js.Stream(context.Background(), sink.Stream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Replicas != 3 || cfg.Storage != jetstream.FileStorage || cfg.Duplicates != relay.DefaultNATSDuplicateWindow || cfg.MaxAge != relay.DefaultRetention {
		t.Errorf("stream: %d replicas, %s storage, duplicate window %s, max age %s; want 3, file, %s, %s",
			cfg.Replicas, cfg.Storage, cfg.Duplicates, cfg.MaxAge, relay.DefaultNATSDuplicateWindow, relay.DefaultRetention)
	}
}

// TestNATSDuplicate publishes one event twice, as a relay that crashed
// before marking it sent does: the stream's duplicate window drops the
// second, and both publishes count as acknowledged.
func TestNATSDuplicate(t *testing.T) {
	servers := testenv.NATSURL(t)
	sink, js := natsSink(t, servers)
	e := &flashorder.Event{ID: "0b1c6d5e-0000-4000-8000-000000000001", OrderID: "o-1", Type: flashorder.EventOrderCreated, Sequence: 1, Time: time.Now().UTC(), Order: json.RawMessage(`{"id":"o-1"}`)}
	body, err := e.CloudEvent(relay.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		if err := sink.Publish(ctx, e, body); err != nil {
			t.Fatalf("publish %d: %v", i+1, err)
		}
	}
	s, err := js.Stream(ctx, sink.Stream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after a republish, want 1", info.State.Msgs)
	}
	m, err := s.GetLastMsgForSubject(ctx, sink.Subject(flashorder.EventOrderCreated))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(jetstream.MsgIDHeader) != e.ID || string(m.Data) != string(body) {
		t.Errorf("stored message: id %q, body %s", m.Header.Get(jetstream.MsgIDHeader), m.Data)
	}
}

// TestNATSNodeKilled kills (SIGKILL) the stream leader of a private 3-node
// cluster while the relay publishes: the relay goes on through the other
// two, and the stream holds every event exactly once; the killed node comes
// back and catches up.
func TestNATSNodeKilled(t *testing.T) {
	cluster := testenv.PrivateNATS(t)
	const n = 600 // orders: 800 events
	db, orders := outboxWithOrders(t, testenv.SQLiteURL(t), n)
	sink, js := natsSink(t, cluster.URL)
	var published, failures atomic.Int64
	opts := fastOptions()
	opts.MinBackoff, opts.MaxBackoff, opts.MaxAttempts = 50*time.Millisecond, time.Second, 1000
	opts.OnPublished = func() { published.Add(1) }
	opts.OnFailure = func() { failures.Add(1) }
	r := startRelay(t, db, sink, newLocker(t), opts)
	testenv.WaitFor(t, "a quarter of the events published", 60*time.Second, func() bool { return published.Load() >= 200 })
	s, err := js.Stream(context.Background(), sink.Stream())
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	var victim int
	switch leader {
	case "nats-1", "nats-2", "nats-3":
		victim = int(leader[5] - '0')
	default:
		t.Fatalf("stream leader %q", leader)
	}
	at := published.Load()
	cluster.Kill(t, victim)
	t.Logf("killed the stream leader %s after %d of %d events", leader, at, n+n/3)
	waitSettled(t, db)
	r.Stop()
	t.Logf("published %d, %d failed attempts while the stream changed leader", published.Load(), failures.Load())
	if published.Load() <= at {
		t.Fatalf("nothing published after the kill")
	}
	cluster.Restart(t)
	rc, msgs := readStream(t, js, sink.Stream())
	checkStream(t, db, rc, orders, n+n/3)
	if msgs != n+n/3 {
		t.Errorf("stream holds %d messages, want %d (one per event)", msgs, n+n/3)
	}
}

// TestNATSStartsWhileDown makes the sink while no NATS server answers, as
// orderd does when it starts before NATS: NewNATS does not wait, a publish
// fails at once (the relay retries it), and once the cluster is up the same
// sink creates the stream and publishes.
func TestNATSStartsWhileDown(t *testing.T) {
	cluster := testenv.PrivateNATS(t)
	cluster.Stop(t)
	start := time.Now()
	sink, js := natsSink(t, cluster.URL)
	e := &flashorder.Event{ID: "0b1c6d5e-0000-4000-8000-000000000002", OrderID: "o-2", Type: flashorder.EventOrderCreated, Sequence: 1, Time: time.Now().UTC(), Order: json.RawMessage(`{"id":"o-2"}`)}
	body, err := e.CloudEvent(relay.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Publish(context.Background(), e, body); err == nil {
		t.Fatal("published with every server down")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("NewNATS and a failed publish with NATS down took %s, want no wait", d)
	}
	cluster.Restart(t)
	testenv.WaitFor(t, "a publish after the restart", 30*time.Second, func() bool {
		return sink.Publish(context.Background(), e, body) == nil
	})
	rc, msgs := readStream(t, js, sink.Stream())
	if msgs != 1 || len(rc.events) != 1 {
		t.Errorf("stream holds %d messages, want 1", msgs)
	}
}
