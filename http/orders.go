package http

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// IdempotencyKeyHeader carries the client's idempotency key; ReplayedHeader
// marks an answer replayed from an earlier request.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotent-Replayed"
)

// createOrder is POST /api/v1/orders. Its backend calls run under
// orderContext's deadline.
func (s *Server) createOrder(c *gin.Context) {
	ctx, cancel := s.orderContext(c)
	defer cancel()
	req := &flashorder.PlaceOrderRequest{}
	if err := decodeOrder(c, &req.OrderRequest); err != nil {
		s.writeError(c, err)
		return
	}
	if err := s.actAs(c, &req.UserID); err != nil {
		s.writeError(c, err)
		return
	}
	if err := req.Validate(); err != nil {
		s.writeError(c, err)
		return
	}
	if !s.allowOrder(ctx, c, req.UserID) {
		return
	}
	req.Fingerprint = req.OrderRequest.Fingerprint()
	keys, keyed := c.Request.Header[IdempotencyKeyHeader]
	if !keyed {
		order, err := s.placer.PlaceOrder(ctx, req)
		if err != nil {
			s.writeError(c, err)
			return
		}
		s.writeOrder(c, order)
		return
	}
	if len(keys) != 1 {
		s.writeError(c, flashorder.Errorf(flashorder.EINVALID, "send one Idempotency-Key header"))
		return
	}
	if err := flashorder.ValidateIdempotencyKey(keys[0]); err != nil {
		s.writeError(c, err)
		return
	}
	req.IdempotencyKey = keys[0]
	s.createOrderOnce(ctx, c, req)
}

// createOrderOnce places an order under an idempotency key: the first request
// claims the key and runs; later ones with the same content replay its answer,
// and ones with other content are refused.
func (s *Server) createOrderOnce(ctx context.Context, c *gin.Context, req *flashorder.PlaceOrderRequest) {
	key := req.IdempotencyKey
	rec, err := s.idempotency.Claim(ctx, key, req.Fingerprint)
	if err != nil {
		s.writeError(c, err)
		return
	}
	if rec != nil {
		s.answerClaimed(ctx, c, req, rec)
		return
	}

	// The claim is ours: it must end completed or released, even on panic.
	completed := false
	defer func() {
		if !completed {
			if err := s.idempotency.Release(context.WithoutCancel(ctx), key); err != nil {
				s.Logger.Warn("release idempotency claim", "err", err)
			}
		}
	}()

	order, err := s.placer.PlaceOrder(ctx, req)
	if err != nil && (storable(err) || errors.Is(err, flashorder.ErrIdempotencyKeyTaken)) {
		// The key may belong to an order this process never saw (a restart,
		// another instance): the database is the final word.
		stored, lookupErr := s.store.OrderByIdempotencyKey(ctx, key)
		switch {
		case lookupErr == nil && stored.Fingerprint != req.Fingerprint:
			s.writeError(c, flashorder.Errorf(flashorder.EKEYREUSED, "this Idempotency-Key was used for another request"))
			return
		case lookupErr == nil:
			answer := orderAnswer(stored)
			completed = s.complete(ctx, key, answer)
			s.writeAnswer(c, answer, true)
			return
		case flashorder.ErrorCode(lookupErr) != flashorder.ENOTFOUND:
			err = lookupErr
		case errors.Is(err, flashorder.ErrIdempotencyKeyTaken):
			err = &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "retry later", Err: err}
		}
	}
	if err != nil {
		if !storable(err) {
			s.writeError(c, err)
			return
		}
		info(c).code = flashorder.ErrorCode(err)
		status, body := errorAnswer(err)
		answer := &flashorder.StoredAnswer{Status: status, Body: body}
		completed = s.complete(ctx, key, answer)
		s.writeAnswer(c, answer, false)
		return
	}
	answer := orderAnswer(order)
	completed = s.complete(ctx, key, answer)
	s.writeAnswer(c, answer, false)
}

// answerClaimed answers a request whose key was claimed before: a replay of
// the stored answer, or a refusal.
func (s *Server) answerClaimed(ctx context.Context, c *gin.Context, req *flashorder.PlaceOrderRequest, rec *flashorder.IdempotencyRecord) {
	switch {
	case rec.Fingerprint != req.Fingerprint:
		s.writeError(c, flashorder.Errorf(flashorder.EKEYREUSED, "this Idempotency-Key was used for another request"))
	case rec.Answer == nil:
		// A claim can outlive its request: the owner committed the order
		// but could neither store the answer nor release the claim (Redis
		// stopped answering), or died after the commit. The database has
		// the final word, as for a key this process never saw.
		if stored, err := s.store.OrderByIdempotencyKey(ctx, req.IdempotencyKey); err == nil && stored.Fingerprint == req.Fingerprint {
			s.writeAnswer(c, orderAnswer(stored), true)
			return
		}
		s.writeError(c, flashorder.Errorf(flashorder.EINPROGRESS, "a request with this Idempotency-Key is still in flight"))
	default:
		s.writeAnswer(c, rec.Answer, true)
	}
}

// complete stores answer for key and reports whether it did.
func (s *Server) complete(ctx context.Context, key string, answer *flashorder.StoredAnswer) bool {
	if err := s.idempotency.Complete(context.WithoutCancel(ctx), key, *answer); err != nil {
		s.Logger.Warn("store idempotent answer", "err", err)
		return false
	}
	return true
}

// storable reports whether err is a business refusal whose answer is kept for
// replays: retrying it would not change the outcome by itself.
func storable(err error) bool {
	switch flashorder.ErrorCode(err) {
	case flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED, flashorder.EUNKNOWNPRODUCT:
		return true
	}
	return false
}

// orderPath is the path of an order's resource, without its id.
const orderPath = "/api/v1/orders/"

func orderAnswer(o *flashorder.Order) *flashorder.StoredAnswer {
	return &flashorder.StoredAnswer{Status: http.StatusCreated, Body: encodeOrder(o), Location: orderPath + o.ID}
}

// writeOrder answers 201 with a new order, as writeAnswer(c, orderAnswer(o),
// false) does, without the StoredAnswer.
func (s *Server) writeOrder(c *gin.Context, o *flashorder.Order) {
	c.Writer.Header()["Location"] = info(c).headerValue(orderPath + o.ID)
	writeBody(c, http.StatusCreated, encodeOrder(o))
}

func (s *Server) writeAnswer(c *gin.Context, a *flashorder.StoredAnswer, replayed bool) {
	h := c.Writer.Header()
	if a.Location != "" {
		h["Location"] = info(c).headerValue(a.Location)
	}
	if replayed {
		h[ReplayedHeader] = replayedTrue
	}
	writeBody(c, a.Status, a.Body)
}

func (s *Server) getOrder(c *gin.Context) {
	o, err := s.ownOrder(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, o)
}

type orderList struct {
	Orders     []*flashorder.Order `json:"orders"`
	NextCursor string              `json:"next_cursor"`
}

// ownOrder returns the order in the path, when the request may see it (see
// owns). An id that cannot be an order's is not looked up.
func (s *Server) ownOrder(c *gin.Context) (*flashorder.Order, error) {
	id := c.Param("id")
	if !flashorder.ValidOrderID(id) {
		return nil, errNoOrder()
	}
	o, err := s.store.Order(c.Request.Context(), id)
	if err != nil {
		return nil, err
	}
	if !owns(c, o) {
		return nil, errNoOrder()
	}
	return o, nil
}

func (s *Server) listOrders(c *gin.Context) {
	f := flashorder.OrderFilter{UserID: c.Query("user_id"), Limit: flashorder.DefaultListLimit}
	if err := s.actAs(c, &f.UserID); err != nil {
		s.writeError(c, err)
		return
	}
	if err := flashorder.ValidateUserID(f.UserID); err != nil {
		s.writeError(c, err)
		return
	}
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > flashorder.MaxListLimit {
			s.writeError(c, flashorder.Errorf(flashorder.EINVALID, "limit must be an integer 1..%d", flashorder.MaxListLimit))
			return
		}
		f.Limit = n
	}
	if v := c.Query("cursor"); v != "" {
		id, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || !flashorder.ValidOrderID(string(id)) {
			s.writeError(c, flashorder.Errorf(flashorder.EINVALID, "cursor is not one this API returned"))
			return
		}
		f.Before = string(id)
	}
	page, err := s.store.Orders(c.Request.Context(), f)
	if err != nil {
		s.writeError(c, err)
		return
	}
	out := orderList{Orders: page.Orders}
	if page.Next != "" {
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(page.Next))
	}
	s.writeJSON(c, http.StatusOK, out)
}
