package queue

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretLen is the shortest HS256 secret a Signer accepts: the hash's
// size, as RFC 7518 requires.
const MinSecretLen = 32

// Errors of Verify.
var (
	// ErrTokenInvalid is a token that is not one of ours: malformed,
	// forged, signed with another algorithm (alg none included).
	ErrTokenInvalid = errors.New("queue: invalid admission token")
	// ErrTokenExpired is a genuine token past its expiry.
	ErrTokenExpired = errors.New("queue: admission token expired")
	// ErrTokenMismatch is a genuine token of another user or queue.
	ErrTokenMismatch = errors.New("queue: admission token of another user or queue")
)

// Signer signs admissions into tokens and verifies them: compact JWTs, HS256
// with a shared secret, so that every instance verifies what any instance
// signed. A token is bound to its user (sub), queue (q: the SKU or the sale
// id), ticket (tid) and expiry (exp). Single use is not the token's business:
// the store's Use and, at the order, the database's unique index decide it.
type Signer struct {
	secret []byte
}

// claims are an admission token's claims.
type claims struct {
	Queue  string `json:"q"`
	Ticket string `json:"tid"`
	jwt.RegisteredClaims
}

// NewSigner returns a Signer with secret, of at least MinSecretLen bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("queue: admission secret of %d bytes, want at least %d", len(secret), MinSecretLen)
	}
	return &Signer{secret: append([]byte(nil), secret...)}, nil
}

// Sign returns the token of a.
func (s *Signer) Sign(a Admission) (string, error) {
	c := claims{Queue: a.QueueID, Ticket: a.TicketID, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   a.UserID,
		ExpiresAt: jwt.NewNumericDate(a.ExpiresAt),
	}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.secret)
	if err != nil {
		return "", fmt.Errorf("queue: sign admission of ticket %q: %w", a.TicketID, err)
	}
	return tok, nil
}

// Verify checks that token is a genuine, unexpired admission of userID to
// queueID at now (no leeway: the store's expiry is the same instant), and
// returns it. It fails with ErrTokenInvalid, ErrTokenExpired and
// ErrTokenMismatch.
func (s *Signer) Verify(token, userID, queueID string, now time.Time) (Admission, error) {
	p := jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return now }))
	var c claims
	_, err := p.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.secret, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Admission{}, ErrTokenExpired
	case err != nil:
		return Admission{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	}
	if q, err := ParseTicketID(c.Ticket); err != nil || q != c.Queue {
		return Admission{}, fmt.Errorf("%w: ticket %q of queue %q", ErrTokenInvalid, c.Ticket, c.Queue)
	}
	if c.Subject != userID || c.Queue != queueID {
		return Admission{}, ErrTokenMismatch
	}
	return Admission{TicketID: c.Ticket, QueueID: c.Queue, UserID: c.Subject, ExpiresAt: c.ExpiresAt.Time}, nil
}
