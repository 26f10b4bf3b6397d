package http

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
)

// DefaultIPKeyPrefix is IPLimiter's default KeyPrefix.
const DefaultIPKeyPrefix = "ip:"

// DefaultIPv6PrefixBits is IPLimiter's default IPv6PrefixBits: one /64, the
// block a single IPv6 subscriber usually gets, is one client.
const DefaultIPv6PrefixBits = 64

// IPLimiter applies a rate limit per client IP (orderd's --ip-rate-limit),
// the client found by TrustedProxies.ClientIP. It knows neither Gin nor
// Server: Check answers with an error for the caller's own error writer,
// Allow writes the refusal itself. Its fields are read only; set them before
// the first request.
type IPLimiter struct {
	limiter flashorder.RateLimiter
	proxies TrustedProxies

	// KeyPrefix is put before the address in the limiter's key, so that a
	// limiter store shared with other limits keeps the IPs apart. The
	// default (NewIPLimiter) is DefaultIPKeyPrefix.
	KeyPrefix string
	// IPv6PrefixBits is how much of an IPv6 address names a client: all
	// addresses in one such prefix share a budget, since whoever holds one
	// address of a /64 holds them all. The default (NewIPLimiter) is
	// DefaultIPv6PrefixBits; 128 limits each address apart.
	IPv6PrefixBits int
	// Logger receives the limiter's failures, at most one a second; nil is
	// slog.Default().
	Logger *slog.Logger

	warnAt atomic.Int64
}

// NewIPLimiter returns a per-IP limit on limiter that finds clients with
// proxies. limiter is best a store of its own (the per-user limit's has
// another rate); on a Redis shared with the per-user limit, give it its own
// key prefix (redis.RateLimiter.Prefix), since a user id may look like an
// IPLimiter key.
func NewIPLimiter(limiter flashorder.RateLimiter, proxies TrustedProxies) *IPLimiter {
	return &IPLimiter{
		limiter:        limiter,
		proxies:        proxies,
		KeyPrefix:      DefaultIPKeyPrefix,
		IPv6PrefixBits: DefaultIPv6PrefixBits,
	}
}

// Key returns the limiter key of client address a: KeyPrefix and the IPv4
// address, or the IPv6 prefix of IPv6PrefixBits in CIDR form.
func (l *IPLimiter) Key(a netip.Addr) string {
	var buf [64]byte
	b := append(buf[:0], l.KeyPrefix...)
	a = a.Unmap().WithZone("")
	if a.Is6() && l.IPv6PrefixBits > 0 && l.IPv6PrefixBits < 128 {
		p, _ := a.Prefix(l.IPv6PrefixBits)
		b = p.AppendTo(b)
	} else {
		b = a.AppendTo(b)
	}
	return string(b)
}

// Check takes one request from the budget of r's client IP. It returns nil
// when the request may go on, and when the budget is spent an
// *flashorder.Error with code rate_limited and the whole seconds (at least
// 1) the client should wait, for Retry-After. A limiter that fails, or a
// client without an IP address (a Unix socket peer), lets the request pass:
// the limit protects capacity and no invariant depends on it.
func (l *IPLimiter) Check(ctx context.Context, r *http.Request) (retryAfter int, err error) {
	ip := l.proxies.ClientIP(r)
	if !ip.IsValid() {
		return 0, nil
	}
	ok, wait, lerr := l.limiter.Allow(ctx, l.Key(ip))
	if lerr != nil {
		l.warn(lerr)
		return 0, nil
	}
	if ok {
		return 0, nil
	}
	secs := retryAfterSeconds(wait)
	return secs, &flashorder.Error{Code: flashorder.ERATELIMITED, Message: "too many requests from this address; retry in " + strconv.Itoa(secs) + " s"}
}

// Allow is Check that answers a refusal itself: 429 rate_limited with
// Retry-After in the API's error format. It reports whether the request may
// go on; when it returns false the answer is written.
func (l *IPLimiter) Allow(w http.ResponseWriter, r *http.Request) bool {
	secs, err := l.Check(r.Context(), r)
	if err == nil {
		return true
	}
	WriteError(w, err, secs)
	return false
}

// warn logs a limiter failure at most once a second.
func (l *IPLimiter) warn(err error) {
	now := time.Now().UnixNano()
	last := l.warnAt.Load()
	if now-last < int64(time.Second) || !l.warnAt.CompareAndSwap(last, now) {
		return
	}
	logger := l.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.Warn("IP rate limiter failed; letting requests through", "err", err)
}

// WriteError answers w with err in the API's error format, for handlers
// outside a Server: the status that err's code maps to, the code and the
// client-safe message, and Retry-After when retryAfterSeconds > 0 (at least
// 1 for a 503, as the Server answers). A Server's own handlers use its
// error writer instead, which also logs and counts the refusal.
func WriteError(w http.ResponseWriter, err error, retryAfterSeconds int) {
	code, message := codeAndMessage(err)
	status := errorStatus(code)
	if status == http.StatusServiceUnavailable {
		retryAfterSeconds = max(retryAfterSeconds, 1)
	}
	h := w.Header()
	if retryAfterSeconds > 0 {
		h["Retry-After"] = []string{decimal(retryAfterSeconds)}
	}
	body := append(encodeError(code, message), '\n')
	h["Content-Type"] = jsonContentTypeValue
	h["Content-Length"] = []string{decimal(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body) // a client that went away has no use for the error
}
