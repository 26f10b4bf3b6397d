package http

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// allowOrder applies the per-user rate limit, when one is set, and answers
// 429 rate_limited with Retry-After when the user's budget is spent. A limiter
// that fails lets the request pass: the limit protects capacity, no invariant
// depends on it, and the database still decides the order.
func (s *Server) allowOrder(ctx context.Context, c *gin.Context, userID string) bool {
	if s.cfg.RateLimiter == nil {
		return true
	}
	ok, retryAfter, err := s.cfg.RateLimiter.Allow(ctx, userID)
	if err != nil {
		s.warnRateLimiter(err)
		return true
	}
	if ok {
		return true
	}
	secs := max(1, int(math.Ceil(retryAfter.Seconds())))
	c.Header("Retry-After", strconv.Itoa(secs))
	s.writeError(c, flashorder.Errorf(flashorder.ERATELIMITED, "too many orders from this user; retry in %d s", secs))
	return false
}

// limitIP applies the per-client-IP limit, when one is set, to joins and
// orders: 429 rate_limited with Retry-After when the address's budget is
// spent.
func (s *Server) limitIP(c *gin.Context) {
	s.allowIP(c)
}

// limitOrderIP is limitIP for orders, except that an order carrying an
// Admission-Token, when the server has a waiting room, is limited later
// (createOrder, by allowIP) and only if the token admits it to nothing: an
// admission already limits its holder to one order, and counting that order
// too would let the limit that keeps a client to one place in the queue
// refuse the order the place was for. A token that is not genuine is
// refused (403) before the order goes anywhere.
func (s *Server) limitOrderIP(c *gin.Context) {
	if s.cfg.IPLimit == nil {
		return
	}
	if _, ok := c.Request.Header[AdmissionTokenHeader]; ok && s.cfg.Room != nil {
		info(c).ipDeferred = true
		return
	}
	s.allowIP(c)
}

// allowIP applies the per-client-IP limit, when one is set: 429
// rate_limited with Retry-After, and false, when the address's budget is
// spent.
func (s *Server) allowIP(c *gin.Context) bool {
	if s.cfg.IPLimit == nil {
		return true
	}
	secs, err := s.cfg.IPLimit.Check(c.Request.Context(), c.Request)
	if err != nil {
		c.Writer.Header()["Retry-After"] = []string{decimal(secs)}
		s.writeError(c, err)
		return false
	}
	return true
}

// warnRateLimiter logs a limiter failure at most once a second.
func (s *Server) warnRateLimiter(err error) {
	now := time.Now().UnixNano()
	last := s.rateWarnAt.Load()
	if now-last < int64(time.Second) || !s.rateWarnAt.CompareAndSwap(last, now) {
		return
	}
	s.cfg.Logger.Warn("rate limiter failed; letting orders through", "err", err)
}
