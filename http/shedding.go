package http

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// DefaultMaxInflight is the default bound on in-flight order requests per
// instance (see Config.MaxInflight).
const DefaultMaxInflight = 1024

// overloadedBody is the answer of a shed request, rendered once: shedding
// happens when the server has no time to spare.
var overloadedBody = encodeError(flashorder.EOVERLOADED, "too many orders in flight; retry shortly")

// shed answers 503 overloaded at once when MaxInflight order requests are
// already in flight: past the point where the database keeps up, a queue only
// grows latency until clients time out and retry, so refusing early keeps the
// accepted requests fast. An atomic counter, not a lock: the check costs two
// atomic adds. A shed request counts in
// flashorder_orders_refused_total{code="overloaded"} (see countOrder).
func (s *Server) shed(c *gin.Context) {
	limit := int64(s.cfg.MaxInflight)
	if limit <= 0 {
		return
	}
	if s.inflight.Add(1) > limit {
		s.inflight.Add(-1)
		// Not writeError: shedding is expected under load and must not
		// log an error per refused request.
		info(c).code = flashorder.EOVERLOADED
		c.Writer.Header()["Retry-After"] = retryAfterOne
		writeBody(c, http.StatusServiceUnavailable, overloadedBody)
		c.Abort()
		return
	}
	defer s.inflight.Add(-1)
	c.Next()
}

// orderContext returns the context of an order request: the request's
// context bounded by OrderTimeout, the time an order may spend in the
// backends. Past it the database calls give up and the request answers 503
// unavailable, instead of hanging (a database that stopped answering) until
// the client or the server's write timeout gives up on it. The handler passes
// this context on itself rather than putting it in a copy of the request,
// which would cost a request copy per order, and releases it when done.
//
// The deadline is armed lazily (see orderCtx): most of a drop's crowd is
// answered from memory (a gate's refusal) and never waits on a backend, so
// it never pays for the timer and the cancel registration.
func (s *Server) orderContext(c *gin.Context) *orderCtx {
	parent := c.Request.Context()
	var deadline time.Time
	if s.cfg.OrderTimeout > 0 {
		deadline = time.Now().Add(s.cfg.OrderTimeout)
	}
	if rc, ok := parent.(*requestCtx); ok && !rc.order.used {
		rc.order.init(parent, deadline)
		return &rc.order
	}
	oc := &orderCtx{}
	oc.init(parent, deadline)
	return oc
}

// orderCtx is a context.Context that is its parent with a deadline, armed
// the first time a caller waits on it (Done, Err) or derives a context from
// it (which calls Done): context.WithDeadline's timer, cancel channel and
// registration in the parent are made only for a request that reaches a
// backend. Until then Deadline already reports the deadline, and Value is the
// parent's. The zero deadline means none: the context is the parent's.
//
// It lives inside the request's requestCtx, so that an order request
// allocates nothing for it; release must be called when the request is done.
type orderCtx struct {
	parent   context.Context
	deadline time.Time
	used     bool // init ran: the requestCtx's slot is taken

	once   sync.Once
	armed  atomic.Bool // ctx and cancel are set
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *orderCtx) init(parent context.Context, deadline time.Time) {
	c.parent, c.deadline, c.used = parent, deadline, true
}

// arm returns the context with the deadline, making it on the first call.
func (c *orderCtx) arm() context.Context {
	c.once.Do(func() {
		if c.deadline.IsZero() {
			c.ctx = c.parent
		} else {
			c.ctx, c.cancel = context.WithDeadline(c.parent, c.deadline)
		}
		c.armed.Store(true)
	})
	return c.ctx
}

// Deadline implements context.Context: the earlier of the parent's deadline
// and the order's.
func (c *orderCtx) Deadline() (time.Time, bool) {
	d, ok := c.parent.Deadline()
	if c.deadline.IsZero() || ok && d.Before(c.deadline) {
		return d, ok
	}
	return c.deadline, true
}

// Done implements context.Context.
func (c *orderCtx) Done() <-chan struct{} { return c.arm().Done() }

// Err implements context.Context.
func (c *orderCtx) Err() error { return c.arm().Err() }

// Value implements context.Context. Once armed it asks the armed context,
// so that the context package finds the armed context's own cancellation
// when a caller derives a context from this one.
func (c *orderCtx) Value(key any) any {
	if c.armed.Load() {
		return c.ctx.Value(key)
	}
	return c.parent.Value(key)
}

// release stops the deadline's timer, if it was armed.
func (c *orderCtx) release() {
	if c.armed.Load() && c.cancel != nil {
		c.cancel()
	}
}
