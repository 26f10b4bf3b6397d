package http

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// wwwAuthenticate is the challenge of every 401: RFC 6750's for a bearer
// token that is missing or not accepted.
var wwwAuthenticate = []string{`Bearer error="invalid_token"`}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header. The scheme name is case-insensitive (RFC 7235).
func bearerToken(h http.Header) (string, bool) {
	v := headerValue(h, "Authorization")
	const scheme = "Bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimLeft(v[len(scheme):], " "), true
}

// isAdmin reports whether token is the admin token, in time that does not
// depend on their contents. A token of another length (every user's JWT)
// is not copied for the comparison; ConstantTimeCompare does not hide
// lengths either.
func (s *Server) isAdmin(token string) bool {
	return len(token) == len(s.cfg.AdminToken) && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) == 1
}

// unauthorized answers 401 with the bearer challenge.
func (s *Server) unauthorized(c *gin.Context, err error) {
	c.Writer.Header()["Www-Authenticate"] = wwwAuthenticate
	s.writeError(c, err)
}

// requireAdmin refuses requests without the admin bearer token.
func (s *Server) requireAdmin(c *gin.Context) {
	if token, ok := bearerToken(c.Request.Header); !ok || !s.isAdmin(token) {
		s.unauthorized(c, flashorder.Errorf(flashorder.EUNAUTHORIZED, "a valid admin bearer token is required"))
	}
}

// authenticate runs before the order endpoints. Without an Authenticator
// (auth none) it does nothing: the body's user_id is the user. With one, the
// request needs a bearer token: the admin token, which acts for any user,
// or a user's token, whose user it notes for the handlers (see actAs and
// owns). Any other request is refused 401 before its body is read.
func (s *Server) authenticate(c *gin.Context) {
	if s.cfg.Authenticator == nil {
		return
	}
	token, ok := bearerToken(c.Request.Header)
	if !ok {
		s.unauthorized(c, flashorder.Errorf(flashorder.EUNAUTHORIZED, "an Authorization: Bearer token is required"))
		return
	}
	ri := info(c)
	if s.isAdmin(token) {
		ri.admin = true
		return
	}
	user, err := s.cfg.Authenticator.Authenticate(c.Request.Context(), token)
	if err != nil {
		if flashorder.ErrorCode(err) != flashorder.EUNAUTHORIZED {
			err = &flashorder.Error{Code: flashorder.EUNAUTHORIZED, Message: "the bearer token is not valid", Err: err}
		}
		s.unauthorized(c, err)
		return
	}
	ri.user = user
}

// actAs settles the user a request acts for, given the user id it names
// (body or query, "" when left out). A user's token acts for its own user
// only: left out, the id becomes the token's; another id is 403 forbidden.
// The admin token and auth none act for the id as named.
func (s *Server) actAs(c *gin.Context, userID *string) error {
	user := info(c).user
	switch {
	case user == "":
		return nil
	case *userID == "":
		*userID = user
		return nil
	case *userID != user:
		return flashorder.Errorf(flashorder.EFORBIDDEN, "this token acts for its own user_id only")
	}
	return nil
}

// owns reports whether the request may see order o: always, except for a
// user's token and another user's order, which is answered as not found so
// that its existence is not revealed.
func owns(c *gin.Context, o *flashorder.Order) bool {
	user := info(c).user
	return user == "" || o.UserID == user
}

// errNoOrder is the answer for an order that does not exist, or is not the
// caller's.
func errNoOrder() error { return flashorder.Errorf(flashorder.ENOTFOUND, "order not found") }
