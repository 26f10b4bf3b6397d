package queue_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flashorder/flashorder/queue"
)

var (
	hot1, hot2 = queue.ProductQueue("hot-1"), queue.ProductQueue("hot-2")
	drop7      = queue.SaleQueue("drop-7")
	secret     = bytes.Repeat([]byte("k"), queue.MinSecretLen)
	exp        = time.Date(2030, 1, 2, 10, 2, 0, 0, time.UTC)
)

func signer(t *testing.T, key []byte) *queue.Signer {
	t.Helper()
	s, err := queue.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func admission() queue.Admission {
	return queue.Admission{TicketID: queue.NewTicketID(hot1), QueueID: hot1, UserID: "u-42", ExpiresAt: exp}
}

func sign(t *testing.T, s *queue.Signer, a queue.Admission) string {
	t.Helper()
	tok, err := s.Sign(a)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// mapToken signs claims with method and key, for tokens that Sign would
// never make.
func mapToken(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSignVerify(t *testing.T) {
	s := signer(t, secret)
	a := admission()
	got, err := s.Verify(sign(t, s, a), "u-42", hot1, exp.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.TicketID != a.TicketID || got.QueueID != a.QueueID || got.UserID != a.UserID || !got.ExpiresAt.Equal(a.ExpiresAt) {
		t.Fatalf("verified %+v, signed %+v", got, a)
	}
	// A sale's queue: the token names the sale, and an order of any of its
	// products checks against the sale id.
	sale := queue.Admission{TicketID: queue.NewTicketID(drop7), QueueID: drop7, UserID: "u-42", ExpiresAt: exp}
	if _, err := s.Verify(sign(t, s, sale), "u-42", drop7, exp.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	s := signer(t, secret)
	a := admission()
	good := sign(t, s, a)
	before := exp.Add(-time.Second)
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": a.UserID, "q": a.QueueID, "tid": a.TicketID, "exp": exp.Unix()}
	}
	parts := strings.Split(good, ".")
	otherPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u-43","q":"sku:hot-1","tid":"` + a.TicketID + `","exp":` + "1893578520" + `}`))
	noExp := claims()
	delete(noExp, "exp")
	for _, c := range []struct {
		name, token, user, queue string
		now                      time.Time
		want                     error
	}{
		{"forged with another secret", sign(t, signer(t, bytes.Repeat([]byte("x"), 32)), a), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"payload swapped under the signature", parts[0] + "." + otherPayload + "." + parts[2], "u-43", hot1, before, queue.ErrTokenInvalid},
		{"alg none", mapToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims()), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"alg none, signature dropped", parts[0] + "." + parts[1] + ".", "u-42", hot1, before, queue.ErrTokenInvalid},
		{"HS384 with the secret", mapToken(t, jwt.SigningMethodHS384, secret, claims()), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"no exp", mapToken(t, jwt.SigningMethodHS256, secret, noExp), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"exp not a number", mapToken(t, jwt.SigningMethodHS256, secret, withExp(claims(), "soon")), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"exp with an exponent", mapToken(t, jwt.SigningMethodHS256, secret, withExp(claims(), json.Number("1.89357852e+09"))), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"exp negative", mapToken(t, jwt.SigningMethodHS256, secret, withExp(claims(), -1)), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"ticket of another queue", mapToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u-42", "q": hot1, "tid": queue.NewTicketID(hot2), "exp": exp.Unix()}), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"malformed ticket", mapToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u-42", "q": hot1, "tid": hot1 + "~1", "exp": exp.Unix()}), "u-42", hot1, before, queue.ErrTokenInvalid},
		{"empty", "", "u-42", hot1, before, queue.ErrTokenInvalid},
		{"garbage", "a.b.c", "u-42", hot1, before, queue.ErrTokenInvalid},
		{"expired", good, "u-42", hot1, exp.Add(time.Second), queue.ErrTokenExpired},
		{"other user", good, "u-43", hot1, before, queue.ErrTokenMismatch},
		{"other SKU", good, "u-42", hot2, before, queue.ErrTokenMismatch},
		{"other sale", good, "u-42", drop7, before, queue.ErrTokenMismatch},
		{"the sale of the SKU's name", good, "u-42", queue.SaleQueue("hot-1"), before, queue.ErrTokenMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.Verify(c.token, c.user, c.queue, c.now)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
			if got != (queue.Admission{}) {
				t.Fatalf("refused token gave %+v", got)
			}
		})
	}
}

// withExp returns c with its exp set to v.
func withExp(c jwt.MapClaims, v any) jwt.MapClaims {
	c["exp"] = v
	return c
}

// TestTokenExpiryExact checks that a token lives exactly as long as its
// admission, to the microsecond: an admission made late in a second keeps
// its whole life (whole-second exp cut a 1 s admission to a tenth of a
// second here), and a token of whole seconds, as older instances signed
// them, still verifies until its second.
func TestTokenExpiryExact(t *testing.T) {
	s := signer(t, secret)
	a := admission()
	a.ExpiresAt = exp.Add(900*time.Millisecond + 123456*time.Nanosecond)
	tok := sign(t, s, a)
	want := a.ExpiresAt.Truncate(time.Microsecond)
	got, err := s.Verify(tok, "u-42", hot1, want.Add(-time.Microsecond))
	if err != nil {
		t.Fatalf("a microsecond before its expiry: %v", err)
	}
	if !got.ExpiresAt.Equal(want) {
		t.Fatalf("verified expiry %v, want %v", got.ExpiresAt, want)
	}
	if _, err := s.Verify(tok, "u-42", hot1, want); !errors.Is(err, queue.ErrTokenExpired) {
		t.Fatalf("at its expiry: %v, want expired", err)
	}
	old := mapToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u-42", "q": hot1, "tid": a.TicketID, "exp": exp.Unix()})
	if got, err := s.Verify(old, "u-42", hot1, exp.Add(-time.Millisecond)); err != nil || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("a whole-second token before its second: %+v %v", got, err)
	}
	if _, err := s.Verify(old, "u-42", hot1, exp); !errors.Is(err, queue.ErrTokenExpired) {
		t.Fatalf("a whole-second token at its second: %v, want expired", err)
	}
}

func TestNewSignerShortSecret(t *testing.T) {
	if _, err := queue.NewSigner(make([]byte, queue.MinSecretLen-1)); err == nil {
		t.Fatal("a short secret was accepted")
	}
}
