package http

import (
	"context"
	"net/http"

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

// orderContext returns the context of an order request and its cancel
// function: the request's context bounded by OrderTimeout, the time an order
// may spend in the backends. Past it the database calls give up and the
// request answers 503 unavailable, instead of hanging (a database that
// stopped answering) until the client or the server's write timeout gives up
// on it. The handler passes this context on itself rather than putting it in
// a copy of the request, which would cost a request copy per order.
func (s *Server) orderContext(c *gin.Context) (context.Context, context.CancelFunc) {
	if s.cfg.OrderTimeout <= 0 {
		return c.Request.Context(), func() {}
	}
	return context.WithTimeout(c.Request.Context(), s.cfg.OrderTimeout)
}
