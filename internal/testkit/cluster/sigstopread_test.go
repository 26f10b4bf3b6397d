package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/cluster"
)

// sigstopRead forces the window that scenario 4 (sigstop) hits only by
// chance: orderd frozen while it reads a request's header. net/http starts
// the header deadline (orderhttp.ReadHeaderTimeout) when it begins to read a
// request, and the deadline runs on while the process is stopped, so a freeze
// longer than the timeout leaves the read with its deadline passed. Two
// connections each send the first part of an order (the request line and
// headers with an Idempotency-Key, not the header's end); once orderd has
// read those bytes (the kernel's socket queues say so, not a sleep) it is
// stopped, for a second longer than the timeout:
//
//   - closed sends nothing more until orderd, resumed, has closed it, which
//     is then its only possible outcome: net/http closes a connection whose
//     header read timed out without an answer (the load generator's
//     transport_error). The rest of the request, sent after that, gets no
//     answer either, and no order carries its key.
//   - late sends the rest while orderd is stopped, as a client does that
//     connected just before a freeze. On SIGCONT the passed deadline and the
//     waiting bytes race inside orderd's runtime: it answers 201 or closes the
//     connection without an answer (both happen). Either is right as long as
//     an order carries the key exactly when the answer was 201.
//
// Both keys, retried on new connections, then get 201: a new order for
// closed, for late the replay of its order if it had one. The admin audit and
// CheckDB pass.
func (s *suite) sigstopRead(t *testing.T) {
	const sku = "read-1"
	freeze := orderhttp.ReadHeaderTimeout + time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dbURL, err := cluster.CreateDatabase(ctx, s.svc.Env["FLASHORDER_TEST_POSTGRES_URL"])
	if err == nil {
		err = cluster.WaitDatabase(ctx, dbURL)
	}
	if err != nil {
		t.Fatal(err)
	}
	cl := cluster.Start(t, cluster.Options{Binary: s.bin, N: 1, Args: []string{"--db", dbURL, "--log-level", "warn"}})
	// Every request of this client goes on a connection of its own.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	api := orderhttp.NewClient(cl.URL(0), cl.AdminToken())
	api.HTTPClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	if _, err := api.PutProduct(ctx, flashorder.Product{SKU: sku, Name: "read", PriceCents: 100, Stock: 10}); err != nil {
		t.Fatal(err)
	}
	req := flashorder.OrderRequest{UserID: "u-read", Items: []flashorder.ItemRequest{{SKU: sku, Quantity: 1}}}
	closed := openPartial(ctx, t, cl.URL(0), "read-closed", req)
	late := openPartial(ctx, t, cl.URL(0), "read-late", req)
	for _, p := range []*partialOrder{closed, late} {
		if err := waitServerRead(ctx, p.conn); err != nil {
			t.Fatalf("%s: %v", p.key, err)
		}
	}

	pid := cl.PID(0)
	if err := cl.Signal(0, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Signal(0, syscall.SIGCONT) }() // when a check below stops the test early
	if err := waitStopped(ctx, pid); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if _, err := late.conn.Write(late.rest); err != nil {
		t.Fatalf("%s: the rest of the request, while orderd is stopped: %v", late.key, err)
	}
	select {
	case <-time.After(time.Until(stopped.Add(freeze))):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if err := cl.Signal(0, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()

	// closed: no answer, only the end of the connection.
	_ = closed.conn.SetDeadline(time.Now().Add(time.Minute))
	if n, err := closed.conn.Read(make([]byte, 512)); n != 0 || err != io.EOF {
		t.Fatalf("%s after SIGCONT: read %d bytes, %v; want the connection closed without an answer (EOF)", closed.key, n, err)
	}
	closedAfter := time.Since(resumed)
	_, werr := closed.conn.Write(closed.rest)
	b, rerr := io.ReadAll(closed.conn)
	if werr != nil && !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Errorf("%s: the rest of the request after the close: %v", closed.key, werr)
	}
	if len(b) > 0 || (rerr != nil && !errors.Is(rerr, syscall.ECONNRESET)) {
		t.Errorf("%s: after the rest of the request: %q, %v; want no answer", closed.key, b, rerr)
	}

	// late: 201, or no answer.
	_ = late.conn.SetDeadline(time.Now().Add(time.Minute))
	lateStatus, lateOrder, err := late.answer()
	if err != nil {
		t.Fatalf("%s after SIGCONT: %v", late.key, err)
	}
	if lateStatus != 0 && lateStatus != http.StatusCreated {
		t.Errorf("%s after SIGCONT: %d; want 201 or no answer", late.key, lateStatus)
	}

	stored := func(key string) int64 {
		t.Helper()
		n, err := cluster.OrdersWithKeys(ctx, dbURL, []string{key})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := stored(closed.key); n != 0 {
		t.Errorf("%s got no answer and %d orders carry its key; want none", closed.key, n)
	}
	var wantLate int64
	if lateStatus == http.StatusCreated {
		wantLate = 1
	}
	if n := stored(late.key); n != wantLate {
		t.Errorf("%s answered %d and %d orders carry its key; want %d", late.key, lateStatus, n, wantLate)
	}

	// The clients' retries, each on a new connection.
	var ids []string
	for _, p := range []*partialOrder{closed, late} {
		res, err := api.CreateOrder(ctx, req, p.key)
		if err != nil {
			t.Errorf("%s retried: %v; want 201", p.key, err)
			continue
		}
		ids = append(ids, res.Order.ID)
		wantReplay := p == late && lateStatus == http.StatusCreated
		if res.Replayed != wantReplay || (wantReplay && res.Order.ID != lateOrder) {
			t.Errorf("%s retried: order %s, replayed %v; want replayed %v (first answer: order %q)", p.key, res.Order.ID, res.Replayed,
				wantReplay, lateOrder)
		}
		if n := stored(p.key); n != 1 {
			t.Errorf("%s retried: %d orders carry its key; want 1", p.key, n)
		}
	}
	audit, err := api.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !audit.OK {
		t.Errorf("admin audit: %+v", audit.Products)
	}
	st, err := cluster.CheckDB(ctx, dbURL, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Violations) > 0 || st.Orders != 2 {
		t.Errorf("database: %d orders (want 2), violations %v", st.Orders, st.Violations)
	}
	lateOutcome := "no answer"
	if lateStatus != 0 {
		lateOutcome = strconv.Itoa(lateStatus)
	}
	t.Logf("orderd stopped %s with two headers half read; after SIGCONT it closed %s without an answer %s later; %s, whose rest came during the freeze, got %s",
		freeze, closed.key, closedAfter.Round(time.Microsecond), late.key, lateOutcome)
}

// partialOrder is an order request of which only the first part has been
// sent, on a connection of its own.
type partialOrder struct {
	key  string
	conn net.Conn
	// rest is the request's remainder: the end of its header and its body.
	rest []byte
}

// openPartial connects to baseURL and sends the request line and headers of
// an order with Idempotency-Key key, up to but not including Content-Length
// and the header's end.
func openPartial(ctx context.Context, t *testing.T, baseURL, key string, req flashorder.OrderRequest) *partialOrder {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST /api/v1/orders HTTP/1.1\r\nHost: %s\r\n%s: %s\r\nContent-Type: application/json\r\n",
		u.Host, orderhttp.IdempotencyKeyHeader, key)
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	rest := fmt.Appendf(nil, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return &partialOrder{key: key, conn: conn, rest: rest}
}

// answer reads the answer to p: its status and, for a 201, the order's id;
// status 0 when the server closed the connection without sending a byte.
func (p *partialOrder) answer() (status int, order string, err error) {
	br := bufio.NewReader(p.conn)
	if _, err := br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return 0, "", nil
		}
		return 0, "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, "", nil
	}
	var o flashorder.Order
	if err := json.Unmarshal(b, &o); err != nil {
		return resp.StatusCode, "", fmt.Errorf("order answer %q: %w", b, err)
	}
	return resp.StatusCode, o.ID, nil
}

// waitServerRead waits until the server end of c, a TCP connection on
// loopback, has read every byte c sent: c's bytes are all acknowledged and
// the server socket's receive queue is empty, as /proc/net/tcp shows them.
// For a connection's first request, net/http's header deadline is then
// running.
func waitServerRead(ctx context.Context, c net.Conn) error {
	client := c.LocalAddr().(*net.TCPAddr).Port
	server := c.RemoteAddr().(*net.TCPAddr).Port
	for {
		unacked, unread, err := loopbackQueues(client, server)
		if err != nil {
			return err
		}
		if unacked == 0 && unread == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server did not read the bytes of connection :%d (%d unacknowledged, %d unread): %w",
				client, unacked, unread, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// loopbackQueues returns, from /proc/net/tcp, the bytes not yet acknowledged
// on the socket from port client to port server and the bytes not yet read
// on the socket from server to client; -1 for a socket not listed.
func loopbackQueues(client, server int) (unacked, unread int64, err error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, 0, err
	}
	unacked, unread = -1, -1
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		local, remote := hexPort(f[1]), hexPort(f[2])
		tx, rx, ok := strings.Cut(f[4], ":")
		if !ok {
			continue
		}
		switch {
		case local == client && remote == server:
			unacked, err = strconv.ParseInt(tx, 16, 64)
		case local == server && remote == client:
			unread, err = strconv.ParseInt(rx, 16, 64)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/net/tcp line %q: %w", line, err)
		}
	}
	return unacked, unread, nil
}

// hexPort returns the port of a /proc/net/tcp address (ADDR:PORT in hex), or
// -1.
func hexPort(addr string) int {
	_, p, ok := strings.Cut(addr, ":")
	if !ok {
		return -1
	}
	n, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return -1
	}
	return int(n)
}

// waitStopped waits until every thread of process pid is stopped (state T
// in /proc/PID/task/*/stat): SIGSTOP takes effect after kill(2) returns.
func waitStopped(ctx context.Context, pid int) error {
	for {
		stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err == nil && len(stats) == 0 {
			err = fmt.Errorf("process %d has no threads", pid)
		}
		if err != nil {
			return err
		}
		all := true
		for _, p := range stats {
			b, err := os.ReadFile(p)
			i := bytes.LastIndexByte(b, ')')
			// A thread that exits meanwhile has no file any more; look again.
			if err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("process %d did not stop: %w", pid, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
