package http

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// Limits of GET /api/v1/admin/events.
const (
	DefaultEventsLimit = 100
	MaxEventsLimit     = 1000
)

// eventsRoutes registers the admin endpoints of the order events' outbox:
// the published stream, paged by cursor, and the replay of a dead letter.
func (s *Server) eventsRoutes(v1 *gin.RouterGroup) {
	get(v1, "/admin/events", s.requireAdmin, s.listEvents)
	v1.POST("/admin/events/:id/replay", s.requireAdmin, s.replayEvent)
}

// eventJSON is one event of the admin feed: its place in the stream, how
// its delivery ended, and the CloudEvent itself.
type eventJSON struct {
	Cursor     string                `json:"cursor"`
	State      flashorder.EventState `json:"state"`
	Attempts   int                   `json:"attempts"`
	CloudEvent json.RawMessage       `json:"event"`
}

// eventPageJSON is one page of the admin feed. next_cursor is always the
// cursor to continue from (after= of the next request), also on the last
// page for now: more tells whether events follow already.
type eventPageJSON struct {
	Events     []eventJSON `json:"events"`
	NextCursor string      `json:"next_cursor"`
	More       bool        `json:"more"`
}

// listEvents answers one page of the published stream after ?after=.
func (s *Server) listEvents(c *gin.Context) {
	after, ok := flashorder.ParseCursor(c.Query("after"))
	if !ok {
		s.writeError(c, flashorder.Errorf(flashorder.EINVALID, "after must be a cursor this API returned"))
		return
	}
	limit := DefaultEventsLimit
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxEventsLimit {
			s.writeError(c, flashorder.Errorf(flashorder.EINVALID, "limit must be an integer 1..%d", MaxEventsLimit))
			return
		}
		limit = n
	}
	page, err := s.cfg.Store.Events(c.Request.Context(), after, limit)
	if err != nil {
		s.writeError(c, err)
		return
	}
	out := eventPageJSON{Events: make([]eventJSON, 0, len(page.Events)), NextCursor: flashorder.FormatCursor(page.Next), More: page.More}
	for _, e := range page.Events {
		ce, err := e.CloudEvent(flashorder.EventSource)
		if err != nil {
			s.writeError(c, err)
			return
		}
		out.Events = append(out.Events, eventJSON{Cursor: flashorder.FormatCursor(e.Cursor), State: e.State, Attempts: e.Attempts, CloudEvent: ce})
	}
	s.writeJSON(c, http.StatusOK, out)
}

// replayEvent hands a dead letter back to the relay, which delivers it next.
func (s *Server) replayEvent(c *gin.Context) {
	id := c.Param("id")
	if err := s.cfg.Store.ReplayEvent(c.Request.Context(), id); err != nil {
		s.writeError(c, err)
		return
	}
	s.writeJSON(c, http.StatusAccepted, gin.H{"id": id, "state": flashorder.EventPending})
}
