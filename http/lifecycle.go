package http

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// SignatureHeader carries the payment webhook's signature:
// "sha256=" and the hex HMAC-SHA256 of the raw body under the shared secret.
const SignatureHeader = "X-Flashorder-Signature"

// WebhookEventPaid is the webhook event that pays an order.
const WebhookEventPaid = "paid"

// PaymentEvent is the body of POST /api/v1/payments/webhook.
type PaymentEvent struct {
	OrderID string `json:"order_id"`
	Event   string `json:"event"`
}

// lifecycleRoutes registers the endpoints that end orders.
func (s *Server) lifecycleRoutes(v1 *gin.RouterGroup) {
	v1.POST("/orders/:id/pay", s.authenticate, s.payOrder)
	v1.POST("/orders/:id/cancel", s.authenticate, s.cancelOrder)
	v1.POST("/payments/webhook", s.paymentWebhook)
}

// payOrder pays an order. With auth jwt only the admin token (the payment
// service) pays; a user paying their own order would make the signed
// webhook pointless.
func (s *Server) payOrder(c *gin.Context) {
	if info(c).user != "" {
		s.writeError(c, flashorder.Errorf(flashorder.EFORBIDDEN, "only the payment service pays orders"))
		return
	}
	s.endOrder(c, func(ctx context.Context, id string) (*flashorder.Order, error) {
		return s.cfg.Lifecycle.PayOrder(ctx, id)
	})
}

// cancelOrder cancels an order; a user's token cancels only its own.
func (s *Server) cancelOrder(c *gin.Context) {
	s.endOrder(c, func(ctx context.Context, id string) (*flashorder.Order, error) {
		return s.cfg.Lifecycle.CancelOrder(ctx, id)
	})
}

func (s *Server) endOrder(c *gin.Context, end func(context.Context, string) (*flashorder.Order, error)) {
	id := c.Param("id")
	if s.cfg.Lifecycle == nil || !flashorder.ValidOrderID(id) {
		s.writeError(c, errNoOrder())
		return
	}
	if info(c).user != "" {
		// An order's user never changes: checking before ending it is
		// enough.
		if _, err := s.ownOrder(c); err != nil {
			s.writeError(c, err)
			return
		}
	}
	o, err := end(c.Request.Context(), id)
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, o)
}

// paymentWebhook pays an order on a signed notice from the payment provider.
// Providers deliver at least once, so a replay for an order that is already
// paid answers 200 with the order instead of 409.
func (s *Server) paymentWebhook(c *gin.Context) {
	if s.cfg.PaymentWebhookSecret == "" || s.cfg.Lifecycle == nil {
		s.writeError(c, flashorder.Errorf(flashorder.ENOTFOUND, "no such route"))
		return
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		s.writeError(c, jsonError(err))
		return
	}
	if !validSignature(c.GetHeader(SignatureHeader), body, s.cfg.PaymentWebhookSecret) {
		s.writeError(c, flashorder.Errorf(flashorder.EUNAUTHORIZED, "the %s header is missing or does not match the body", SignatureHeader))
		return
	}
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil || mt != "application/json" {
		s.writeError(c, flashorder.Errorf(flashorder.EUNSUPPORTEDMEDIA, "the body must be application/json"))
		return
	}
	var ev PaymentEvent
	if err := decodeStrict(bytes.NewReader(body), &ev); err != nil {
		s.writeError(c, err)
		return
	}
	switch {
	case !flashorder.ValidOrderID(ev.OrderID):
		s.writeError(c, flashorder.Errorf(flashorder.EINVALID, "order_id must be 1..%d characters of A-Z a-z 0-9 _ . : -", flashorder.MaxOrderID))
		return
	case ev.Event != WebhookEventPaid:
		s.writeError(c, flashorder.Errorf(flashorder.EINVALID, "event must be %q", WebhookEventPaid))
		return
	}
	ctx := c.Request.Context()
	o, err := s.cfg.Lifecycle.PayOrder(ctx, ev.OrderID)
	if flashorder.ErrorCode(err) == flashorder.EINVALIDSTATE {
		if cur, lookupErr := s.cfg.Store.Order(ctx, ev.OrderID); lookupErr == nil && cur.Status == flashorder.StatusPaid {
			o, err = cur, nil
		}
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, o)
}

// validSignature checks header against the HMAC-SHA256 of body, in constant
// time.
func validSignature(header string, body []byte, secret string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	return hmac.Equal(sig, SignBody(body, secret))
}

// SignBody returns the HMAC-SHA256 of body under secret: what a payment
// provider sends, hex-encoded after "sha256=", in SignatureHeader.
func SignBody(body []byte, secret string) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return mac.Sum(nil)
}

// PayOrder pays a created order.
func (c *Client) PayOrder(ctx context.Context, id string) (*flashorder.Order, error) {
	var out flashorder.Order
	_, err := c.do(ctx, http.MethodPost, "/api/v1/orders/"+url.PathEscape(id)+"/pay", nil, nil, false, &out)
	return &out, err
}

// CancelOrder cancels a created order.
func (c *Client) CancelOrder(ctx context.Context, id string) (*flashorder.Order, error) {
	var out flashorder.Order
	_, err := c.do(ctx, http.MethodPost, "/api/v1/orders/"+url.PathEscape(id)+"/cancel", nil, nil, false, &out)
	return &out, err
}
