package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// rawClient is a minimal HTTP/1.1 keep-alive client for the hot loop: one
// connection per target, owned by one worker, so a request is one write and
// a buffered read with no goroutines, channels or header maps. net/http's
// client runs three goroutines per connection and allocates a request and a
// response object per call; against a no-op server it reaches about a third
// of this client's rate on two cores. It speaks only what orderd answers:
// Content-Length or chunked bodies, keep-alive, Connection: close.
type rawClient struct {
	timeout time.Duration
	targets []rawTarget
	conns   []*rawConn
	req     []byte
	etag    []byte // scratch for the last answer's ETag

	mu      sync.Mutex // guards cur against the context watcher
	cur     net.Conn
	stopped bool
}

type rawTarget struct {
	addr string // host:port to dial
	host string // Host header
	base string // the base URL's path, which request paths extend
}

type rawConn struct {
	c      net.Conn
	br     *bufio.Reader
	reused bool
}

// rawAnswer is what the hot loop needs from an answer.
type rawAnswer struct {
	status   int
	replayed bool
	// retryAfter is the Retry-After header in seconds; 0 when absent.
	retryAfter int
	// etag is the ETag header, valid until the client's next request.
	etag []byte
}

// message is one request: its method, its path under the target's base URL,
// and the headers orderbench sends ("" for none).
type message struct {
	method string
	path   string
	key    string // Idempotency-Key
	auth   string // Authorization
	etag   string // If-None-Match
	// admission is the Admission-Token header, xff X-Forwarded-For.
	admission string
	xff       string
	body      []byte
}

// ordersPath is the path orders are posted to.
const ordersPath = "/api/v1/orders"

// newRawClient returns a client for the base URLs, or an error when one is
// not plain http (the caller then uses net/http).
func newRawClient(ctx context.Context, baseURLs []string, timeout time.Duration) (*rawClient, func() bool, error) {
	rc := &rawClient{timeout: timeout}
	for _, b := range baseURLs {
		u, err := url.Parse(b)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, nil, fmt.Errorf("loadtest: %q is not a plain http URL", b)
		}
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
		rc.targets = append(rc.targets, rawTarget{addr: addr, host: u.Host, base: u.Path})
	}
	rc.conns = make([]*rawConn, len(rc.targets))
	// Cancelling ctx unblocks a request in flight by expiring its deadline.
	stop := context.AfterFunc(ctx, func() {
		rc.mu.Lock()
		rc.stopped = true
		if rc.cur != nil {
			_ = rc.cur.SetDeadline(time.Unix(1, 0))
		}
		rc.mu.Unlock()
	})
	return rc, stop, nil
}

func (rc *rawClient) dial(ctx context.Context, i int) (*rawConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", rc.targets[i].addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

func (rc *rawClient) drop(i int) {
	if c := rc.conns[i]; c != nil {
		_ = c.c.Close()
		rc.conns[i] = nil
	}
}

// Close closes every connection.
func (rc *rawClient) Close() {
	for i := range rc.conns {
		rc.drop(i)
	}
}

// errStale is a failure on a reused connection before any byte of the answer
// arrived: the server closed it while idle, and the request can be resent.
var errStale = errors.New("loadtest: stale keep-alive connection")

// post sends body to target i's orders with the idempotency key ("" for
// none) and the Authorization header value auth ("" for none), and reads the
// answer's body into out. resent reports that the request went out twice
// because a kept-alive connection turned out closed: with a key the second
// is at worst a replay; without one the caller must count the first
// attempt's outcome as unknown.
func (rc *rawClient) post(ctx context.Context, i int, key, auth string, body []byte, out *bytes.Buffer) (a rawAnswer, resent bool, err error) {
	return rc.send(ctx, i, &message{method: "POST", path: ordersPath, key: key, auth: auth, body: body}, out)
}

// send sends m to target i and reads the answer's body into out, resending
// it once when a kept-alive connection turned out closed (see post).
func (rc *rawClient) send(ctx context.Context, i int, m *message, out *bytes.Buffer) (a rawAnswer, resent bool, err error) {
	a, err = rc.sendOnce(ctx, i, m, out)
	if errors.Is(err, errStale) && ctx.Err() == nil {
		a, err = rc.sendOnce(ctx, i, m, out)
		return a, true, err
	}
	return a, false, err
}

func (rc *rawClient) sendOnce(ctx context.Context, i int, m *message, out *bytes.Buffer) (rawAnswer, error) {
	if ctx.Err() != nil {
		return rawAnswer{}, ctx.Err()
	}
	conn := rc.conns[i]
	if conn == nil {
		var err error
		if conn, err = rc.dial(ctx, i); err != nil {
			return rawAnswer{}, err
		}
		rc.conns[i] = conn
	}
	rc.mu.Lock()
	if rc.stopped {
		rc.mu.Unlock()
		return rawAnswer{}, context.Canceled
	}
	rc.cur = conn.c
	rc.mu.Unlock()
	_ = conn.c.SetDeadline(time.Now().Add(rc.timeout))

	t := &rc.targets[i]
	b := rc.req[:0]
	b = append(b, m.method...)
	b = append(b, ' ')
	b = append(b, t.base...)
	b = append(b, m.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	b = append(b, "\r\nUser-Agent: orderbench"...)
	if m.body != nil {
		b = append(b, "\r\nContent-Type: application/json"...)
	}
	if m.key != "" {
		b = append(b, "\r\nIdempotency-Key: "...)
		b = append(b, m.key...)
	}
	if m.auth != "" {
		b = append(b, "\r\nAuthorization: "...)
		b = append(b, m.auth...)
	}
	if m.etag != "" {
		b = append(b, "\r\nIf-None-Match: "...)
		b = append(b, m.etag...)
	}
	if m.admission != "" {
		b = append(b, "\r\nAdmission-Token: "...)
		b = append(b, m.admission...)
	}
	if m.xff != "" {
		b = append(b, "\r\nX-Forwarded-For: "...)
		b = append(b, m.xff...)
	}
	if m.body != nil {
		b = append(b, "\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(m.body)), 10)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, m.body...)
	rc.req = b

	reused := conn.reused
	a, keep, got, err := rc.exchange(conn, b, out)
	if err != nil || !keep {
		rc.drop(i)
	} else {
		conn.reused = true
	}
	if err != nil && reused && !got && !isTimeout(err) {
		return a, errStale
	}
	return a, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// exchange writes the request and reads the answer. got reports whether any
// byte of the answer arrived; keep whether the connection can be reused.
func (rc *rawClient) exchange(conn *rawConn, req []byte, out *bytes.Buffer) (a rawAnswer, keep, got bool, err error) {
	if _, err = conn.c.Write(req); err != nil {
		return a, false, false, err
	}
	line, err := conn.br.ReadSlice('\n')
	if err != nil {
		return a, false, len(line) > 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return a, false, true, fmt.Errorf("loadtest: bad status line %q", line)
	}
	a.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return a, false, true, fmt.Errorf("loadtest: bad status line %q", line)
	}
	keep = line[7] == '1' // HTTP/1.1 keeps alive by default
	length, chunked := int64(-1), false
	for {
		h, err := conn.br.ReadSlice('\n')
		if err != nil {
			return a, false, true, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return a, false, true, fmt.Errorf("loadtest: bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		case bytes.EqualFold(name, []byte("Idempotent-Replayed")):
			a.replayed = bytes.Equal(value, []byte("true"))
		case bytes.EqualFold(name, []byte("Retry-After")):
			a.retryAfter, _ = strconv.Atoi(string(value))
		case bytes.EqualFold(name, []byte("ETag")):
			rc.etag = append(rc.etag[:0], value...)
			a.etag = rc.etag
		}
	}
	out.Reset()
	switch {
	case a.status == 204 || a.status == 304 || a.status < 200:
	case chunked:
		if _, err = out.ReadFrom(httputil.NewChunkedReader(conn.br)); err == nil {
			err = skipTrailer(conn.br)
		}
	case length >= 0:
		_, err = io.CopyN(out, conn.br, length)
	default:
		keep = false
		_, err = out.ReadFrom(conn.br)
	}
	if err != nil {
		return a, false, true, err
	}
	return a, keep, true, nil
}

// skipTrailer reads a chunked body's trailer, up to and including the empty
// line that ends it.
func skipTrailer(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}
