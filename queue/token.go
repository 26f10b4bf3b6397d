package queue

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// Expires is the admission's expiry to the microsecond: jwt's
	// NumericDate writes whole seconds, which cut a token's life short of
	// its admission's by up to a second (all of a 1 s admission's when it
	// was made late in a second). It shadows RegisteredClaims' exp.
	Expires exactDate `json:"exp"`
	jwt.RegisteredClaims
}

// GetExpirationTime implements jwt.Claims with the exact expiry, which is
// what the parser checks.
func (c claims) GetExpirationTime() (*jwt.NumericDate, error) {
	if c.Expires.IsZero() {
		return nil, nil
	}
	return &jwt.NumericDate{Time: c.Expires.Time}, nil
}

// exactDate is a JWT NumericDate written with microseconds (RFC 7519 allows
// a fraction); whole seconds, as older tokens have them, read too.
type exactDate struct{ time.Time }

// MarshalJSON writes d as seconds with six decimals.
func (d exactDate) MarshalJSON() ([]byte, error) {
	us := d.UnixMicro()
	b := strconv.AppendInt(nil, us/1e6, 10)
	return fmt.Appendf(b, ".%06d", us%1e6), nil
}

// UnmarshalJSON reads seconds, whole or with decimals (digits past the
// sixth are dropped); an exponent or a sign is refused.
func (d *exactDate) UnmarshalJSON(b []byte) error {
	whole, frac, dot := strings.Cut(string(b), ".")
	sec, err := strconv.ParseUint(whole, 10, 63)
	var us uint64
	if err == nil && dot {
		if frac == "" || strings.Trim(frac, "0123456789") != "" {
			err = errors.New("not a number")
		} else {
			us, err = strconv.ParseUint((frac + "000000")[:6], 10, 32)
		}
	}
	if err != nil {
		return fmt.Errorf("queue: token expiry %s: %w", b, err)
	}
	d.Time = time.Unix(int64(sec), int64(us)*1e3).UTC()
	return nil
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
	c := claims{Queue: a.QueueID, Ticket: a.TicketID, Expires: exactDate{a.ExpiresAt.Truncate(time.Microsecond)},
		RegisteredClaims: jwt.RegisteredClaims{Subject: a.UserID}}
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
	return Admission{TicketID: c.Ticket, QueueID: c.Queue, UserID: c.Subject, ExpiresAt: c.Expires.Time}, nil
}
