package http

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/queue"
)

// AdmissionTokenHeader carries an order's admission token: what a ticket's
// poll answered once admitted, for a product sold through a waiting room.
const AdmissionTokenHeader = "Admission-Token"

// WaitingRoom is the waiting room behind the queue endpoints and the
// admission check of orders: queue.Room is one.
type WaitingRoom interface {
	// Join gives the user a place in the queue of product sku.
	Join(ctx context.Context, sku, userID string) (queue.Place, error)
	// Poll returns where a ticket stands.
	Poll(ctx context.Context, ticketID string) (queue.Place, error)
	// CheckOrder checks the admission of an order request (nil, nil: the
	// order needs none) and makes it idempotent by its admission.
	CheckOrder(ctx context.Context, req *flashorder.PlaceOrderRequest, token, clientKey string) (*queue.Admission, error)
	// Done ends the admission once the order is answered and returns the
	// error to answer with.
	Done(ctx context.Context, a *queue.Admission, replayed bool, err error) error
}

// placeView is a ticket as the queue endpoints answer it.
type placeView struct {
	Ticket   string `json:"ticket"`
	Queue    string `json:"queue"`
	Status   string `json:"status"`
	Position int    `json:"position,omitempty"`
	// PreQueue marks a ticket waiting for the start, whose order is drawn
	// at the start.
	PreQueue        bool       `json:"pre_queue,omitempty"`
	StartsAt        *time.Time `json:"starts_at,omitempty"`
	EstimatedWaitMS *int64     `json:"estimated_wait_ms,omitempty"`
	PollAfterMS     int64      `json:"poll_after_ms,omitempty"`
	// AdmissionToken goes in the Admission-Token header of the order;
	// AdmissionExpiresAt is when it lapses unused.
	AdmissionToken     string     `json:"admission_token,omitempty"`
	AdmissionExpiresAt *time.Time `json:"admission_expires_at,omitempty"`
	// AdmissionNumber is the admission's place in the queue's admission
	// order (1 for the first): one round's admissions share their moment,
	// not their number.
	AdmissionNumber int64     `json:"admission_number,omitempty"`
	ServerTime      time.Time `json:"server_time"`
}

// newPlaceView returns p as the API shows it at now: the reference that
// encodePlace, the fast path, is tested against.
func newPlaceView(p queue.Place, now time.Time) placeView {
	v := placeView{Ticket: p.ID, Queue: p.QueueID, Status: string(p.Status), Position: p.Position, PreQueue: p.PreQueue,
		StartsAt: p.StartsAt, PollAfterMS: p.PollAfter.Milliseconds(), ServerTime: now.UTC()}
	if p.EstimatedWait >= 0 {
		ms := p.EstimatedWait.Milliseconds()
		v.EstimatedWaitMS = &ms
	}
	if p.Token != "" {
		v.AdmissionToken = p.Token
		at := p.Admission.ExpiresAt.UTC()
		v.AdmissionExpiresAt = &at
		v.AdmissionNumber = p.Admission.Number
	}
	return v
}

// joinBody is the body of POST /api/v1/products/{sku}/queue: the user, with
// auth none (a user's token names its own).
type joinBody struct {
	UserID string `json:"user_id"`
}

// decodeJoin decodes a join's body as decodeJSON does, same errors
// included: by hand when it has the plain shape (parseJoinBody), else with
// encoding/json on what was read, read error included.
func decodeJoin(c *gin.Context, in *joinBody) error {
	if err := checkJSON(c); err != nil {
		return err
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 2*MaxBodyBytes {
			bodyBuffers.Put(buf)
		}
	}()
	_, err := buf.ReadFrom(c.Request.Body)
	if err == nil && parseJoinBody(buf.Bytes(), &in.UserID) {
		return nil
	}
	var body io.Reader = bytes.NewReader(buf.Bytes())
	if err != nil {
		body = io.MultiReader(body, errReader{err})
	}
	return decodeStrict(body, in)
}

// queueRoutes registers the waiting room's endpoints when there is one.
func (s *Server) queueRoutes(v1 *gin.RouterGroup) {
	if s.cfg.Room == nil {
		return
	}
	v1.POST("/products/:sku/queue", s.authenticate, s.limitIP, s.checkChallenge, s.joinQueue)
	get(v1, "/queue/:ticket", s.authenticate, s.pollQueue)
}

// checkChallenge checks the bot challenge of a join, when there is one.
func (s *Server) checkChallenge(c *gin.Context) {
	if s.cfg.Challenge == nil {
		return
	}
	if err := s.cfg.Challenge.Check(c.Request.Context(), c.Request, s.cfg.TrustedProxies.ClientIP(c.Request)); err != nil {
		s.writeError(c, err)
	}
}

// joinQueue is POST /api/v1/products/{sku}/queue: 202 with the ticket.
func (s *Server) joinQueue(c *gin.Context) {
	sku := c.Param("sku")
	if err := flashorder.ValidateSKU(sku); err != nil {
		s.writeError(c, err)
		return
	}
	var in joinBody
	if c.Request.ContentLength != 0 {
		if err := decodeJoin(c, &in); err != nil {
			s.writeError(c, err)
			return
		}
	}
	if err := s.actAs(c, &in.UserID); err != nil {
		s.writeError(c, err)
		return
	}
	if err := flashorder.ValidateUserID(in.UserID); err != nil {
		s.writeError(c, err)
		return
	}
	p, err := s.cfg.Room.Join(c.Request.Context(), sku, in.UserID)
	if err != nil {
		s.writeError(c, err)
		return
	}
	writeBody(c, http.StatusAccepted, encodePlace(p, s.now()))
}

// pollQueue is GET /api/v1/queue/{ticket}. A user's token sees its own
// tickets only; another's is not found, as for orders.
func (s *Server) pollQueue(c *gin.Context) {
	p, err := s.cfg.Room.Poll(c.Request.Context(), c.Param("ticket"))
	if err == nil {
		if user := info(c).user; user != "" && user != p.UserID {
			err = flashorder.Errorf(flashorder.ENOTFOUND, "no such ticket")
		}
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	writeBody(c, http.StatusOK, encodePlace(p, s.now()))
}

// checkAdmission checks the admission of an order request when the server
// has a waiting room: nil, nil when the order needs none.
func (s *Server) checkAdmission(ctx context.Context, c *gin.Context, req *flashorder.PlaceOrderRequest, clientKey string) (*queue.Admission, error) {
	if s.cfg.Room == nil {
		return nil, nil
	}
	var token string
	if v := c.Request.Header[AdmissionTokenHeader]; len(v) > 0 {
		if len(v) != 1 {
			return nil, flashorder.Errorf(flashorder.EINVALID, "send one Admission-Token header")
		}
		token = v[0]
	}
	return s.cfg.Room.CheckOrder(ctx, req, token, clientKey)
}
