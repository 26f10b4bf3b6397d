package http

import (
	"context"
	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// DefaultMaxInflight is the default bound on in-flight order requests per
// instance (see Server.MaxInflight).
const DefaultMaxInflight = 1024

// shed answers 503 overloaded at once when MaxInflight order requests are
// already in flight: past the point where the database keeps up, a queue only
// grows latency until clients time out and retry, so refusing early keeps the
// accepted requests fast. An atomic counter, not a lock: the check costs two
// atomic adds.
func (s *Server) shed(c *gin.Context) {
	limit := int64(s.MaxInflight)
	if limit <= 0 {
		return
	}
	if s.inflight.Add(1) > limit {
		s.inflight.Add(-1)
		// Not writeError: shedding is expected under load and must not
		// log an error per refused request.
		status, body := errorAnswer(flashorder.Errorf(flashorder.EOVERLOADED, "too many orders in flight; retry shortly"))
		c.Header("Retry-After", "1")
		c.Data(status, jsonContentType, body)
		c.Abort()
		return
	}
	defer s.inflight.Add(-1)
	c.Next()
}

// orderDeadline bounds the time an order request may spend in the backends:
// past OrderTimeout its database calls give up and it answers 503
// unavailable, instead of hanging (a database that stopped answering) until
// the client or the server's write timeout gives up on it.
func (s *Server) orderDeadline(c *gin.Context) {
	if s.OrderTimeout <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.OrderTimeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}
