package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
)

// RequestIDHeader carries the request id: taken from the request when it is
// sane, else generated, and always echoed in the answer.
const RequestIDHeader = "X-Request-Id"

// MaxRequestIDLength bounds a client's request id; a longer one is replaced.
const MaxRequestIDLength = 128

// requestInfo is what the server notes about one request while serving it.
type requestInfo struct {
	id string
	// code is the error code of the answer, set by writeError (and for a
	// stored refusal by createOrderOnce); "" for a success.
	code string
}

type requestInfoKey struct{}

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

func (g *requestIDs) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}

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
	start := time.Now()
	id := c.GetHeader(RequestIDHeader)
	if !saneRequestID(id) {
		id = s.ids.next()
	}
	ri := &requestInfo{id: id}
	c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), requestInfoKey{}, ri))
	c.Header(RequestIDHeader, id)
	c.Next()
	if s.Logger.Enabled(c.Request.Context(), slog.LevelDebug) {
		s.Logger.LogAttrs(c.Request.Context(), slog.LevelDebug, "request",
			slog.String("method", c.Request.Method), slog.String("route", routeOf(c)),
			slog.Int("status", c.Writer.Status()), slog.Duration("duration", time.Since(start)),
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
