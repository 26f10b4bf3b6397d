package http

import (
	"encoding/base64"
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

// createOrder is POST /api/v1/orders: it reads and checks the request, and
// renders what Config.Orders answers (idempotency is checkout.Idempotent's).
// Its backend calls run under orderContext's deadline.
func (s *Server) createOrder(c *gin.Context) {
	ctx := s.orderContext(c)
	defer ctx.release()
	req := orderRequest(c)
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
	// The fingerprint is made where it is needed: by checkout.Idempotent for
	// a keyed request, and by the strategy for an order it stores (a crowd's
	// refusals never need one).
	if keys, keyed := c.Request.Header[IdempotencyKeyHeader]; keyed {
		if len(keys) != 1 {
			s.writeError(c, flashorder.Errorf(flashorder.EINVALID, "send one Idempotency-Key header"))
			return
		}
		if err := flashorder.ValidateIdempotencyKey(keys[0]); err != nil {
			s.writeError(c, err)
			return
		}
		req.IdempotencyKey = keys[0]
	}
	admitted, err := s.checkAdmission(ctx, c, req, req.IdempotencyKey)
	if err != nil {
		s.writeError(c, err)
		return
	}
	if admitted == nil && info(c).ipDeferred && !s.allowIP(c) {
		return
	}
	order, replayed, err := s.cfg.Orders.Place(ctx, req)
	if admitted != nil {
		err = s.cfg.Room.Done(ctx, admitted, replayed, err)
	}
	if replayed {
		c.Writer.Header()[ReplayedHeader] = replayedTrue
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.writeOrder(c, order)
}

// orderPath is the path of an order's resource, without its id.
const orderPath = "/api/v1/orders/"

// writeOrder answers 201 with an order, new or replayed.
func (s *Server) writeOrder(c *gin.Context, o *flashorder.Order) {
	c.Writer.Header()["Location"] = info(c).headerValue(orderPath + o.ID)
	writeBody(c, http.StatusCreated, encodeOrder(o))
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
	o, err := s.cfg.Store.Order(c.Request.Context(), id)
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
	page, err := s.cfg.Store.Orders(c.Request.Context(), f)
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
