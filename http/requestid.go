package http

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// RequestIDHeader carries the request id: taken from the request when it is
// sane, else generated, and always echoed in the answer.
const RequestIDHeader = "X-Request-Id"

// MaxRequestIDLength bounds a client's request id; a longer one is replaced.
const MaxRequestIDLength = 128

// requestInfo is what the server notes about one request while serving it.
type requestInfo struct {
	id string
	// start is when the request's handling began (the metrics' and the
	// debug log's duration count from it).
	start time.Time
	// code is the error code of the answer, set by writeError (a refusal
	// replayed under its Idempotency-Key too) and by shed; "" for a success.
	code string
	// user is the user of a valid user token (auth jwt); admin marks the
	// admin token. Both are unset with auth none: see Server.authenticate.
	user  string
	admin bool
	// ipDeferred marks an order that carried an Admission-Token: its
	// per-IP limit is applied only if the token admits to nothing (see
	// limitOrderIP).
	ipDeferred bool
	// body is an order request's body as readOrderBody read it, and
	// bodyErr the error that ended the read, if any.
	body    *bytes.Buffer
	bodyErr error
	// vals backs the answer's header values that change per request
	// (X-Request-Id, Content-Length, and Location or a not_started
	// refusal's Retry-After): see headerValue.
	vals  [3]string
	nvals int
}

// headerValue returns v as a header value ([]string{v}), backed by ri's
// spare slots while there are some, so that most answers set their headers
// without an allocation.
func (ri *requestInfo) headerValue(v string) []string {
	if ri.nvals == len(ri.vals) {
		return []string{v}
	}
	i := ri.nvals
	ri.nvals++
	ri.vals[i] = v
	return ri.vals[i : i+1 : i+1]
}

type requestInfoKey struct{}

// requestCtx is a request's context: its parent and the request's notes, in
// one allocation where context.WithValue and the notes would take two.
//
// An order request's own values live here too, for the same reason: each is
// used by one request only and never reused, so they share the lifetime of
// the request's context and nothing else.
type requestCtx struct {
	context.Context
	info requestInfo
	// order is an order request's context (see orderContext).
	order orderCtx
	// orderReq is the order request, and items the backing array of a
	// single-item order's Items (see orderRequest).
	orderReq flashorder.PlaceOrderRequest
	items    [1]flashorder.ItemRequest
	// idBuf holds the generated request id's bytes.
	idBuf [requestIDSize]byte
}

// orderRequest returns a new, empty order request for c's request, whose
// Items can hold one item without an allocation.
func orderRequest(c *gin.Context) *flashorder.PlaceOrderRequest {
	if rc, ok := c.Request.Context().(*requestCtx); ok {
		rc.orderReq.Items = rc.items[:0]
		return &rc.orderReq
	}
	return &flashorder.PlaceOrderRequest{}
}

// Value returns the request's notes for requestInfoKey, else the parent's
// value.
func (c *requestCtx) Value(key any) any {
	if key == (requestInfoKey{}) {
		return &c.info
	}
	return c.Context.Value(key)
}

// RequestID returns the id of the request that ctx belongs to, or "" outside
// a request served by Server.
func RequestID(ctx context.Context) string {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri.id
	}
	return ""
}

// info returns the request's notes; never nil.
func info(c *gin.Context) *requestInfo {
	if rc, ok := c.Request.Context().(*requestCtx); ok {
		return &rc.info
	}
	if ri, ok := c.Request.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// requestIDs generates request ids: a random prefix per server and a counter,
// so that ids are unique across instances without a random read per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &requestIDs{prefix: hex.EncodeToString(b) + "-"}
}

// next returns a new id, written in buf: the id is a string over buf's
// bytes, which are never written again (buf is a request's own, see
// requestCtx), so that an id costs no allocation of its own.
func (g *requestIDs) next(buf *[requestIDSize]byte) string {
	b := append(buf[:0], g.prefix...)
	b = strconv.AppendUint(b, g.n.Add(1), 36)
	return unsafe.String(&b[0], len(b))
}

// requestIDSize holds a generated id: a 13-byte prefix and a counter of at
// most 13 base-36 digits.
const requestIDSize = 32

// saneRequestID reports whether a client's id can be logged and echoed as is:
// 1..MaxRequestIDLength printable ASCII characters without spaces.
func saneRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestID gives every request an id (in its context and the answer's
// header) and, at debug level, logs one line per request.
func (s *Server) requestID(c *gin.Context) {
	rc := &requestCtx{Context: c.Request.Context()}
	rc.info.start = time.Now()
	id := headerValue(c.Request.Header, RequestIDHeader)
	if !saneRequestID(id) {
		id = s.ids.next(&rc.idBuf)
	}
	ri := &rc.info
	ri.id = id
	c.Request = c.Request.WithContext(rc)
	c.Writer.Header()[RequestIDHeader] = ri.headerValue(id)
	c.Next()
	if s.cfg.Logger.Enabled(c.Request.Context(), slog.LevelDebug) {
		s.cfg.Logger.LogAttrs(c.Request.Context(), slog.LevelDebug, "request",
			slog.String("method", c.Request.Method), slog.String("route", routeOf(c)),
			slog.Int("status", c.Writer.Status()), slog.Duration("duration", time.Since(ri.start)),
			slog.String("code", ri.code), slog.String("request_id", id))
	}
}

// routeOf returns the route pattern that served c, or "unmatched".
func routeOf(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return "unmatched"
}
