package jwtauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/jwtauth"
)

// signer is a private key, the JWT method it signs with and its kid.
type signer struct {
	kid    string
	method jwt.SigningMethod
	key    any
}

func newSigners(t *testing.T, suffix string) []signer {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []signer{
		{"rsa-" + suffix, jwt.SigningMethodRS256, rsaKey},
		{"ec-" + suffix, jwt.SigningMethodES256, ecKey},
		{"ed-" + suffix, jwt.SigningMethodEdDSA, edKey},
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk is the public JWK of s.
func (s signer) jwk() map[string]string {
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		return map[string]string{"kty": "RSA", "kid": s.kid, "alg": "RS256", "use": "sig",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PrivateKey:
		pub, _ := k.PublicKey.ECDH()
		raw := pub.Bytes() // 0x04 || X || Y
		return map[string]string{"kty": "EC", "kid": s.kid, "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": b64(raw[1:33]), "y": b64(raw[33:])}
	case ed25519.PrivateKey:
		return map[string]string{"kty": "OKP", "kid": s.kid, "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
			"x": b64(k.Public().(ed25519.PublicKey))}
	}
	panic("unknown key")
}

func jwks(t *testing.T, signers []signer) []byte {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for _, s := range signers {
		set.Keys = append(set.Keys, s.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s signer) token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, claims)
	tok.Header["kid"] = s.kid
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func good(sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Minute).Unix()}
}

func wantUser(t *testing.T, v *jwtauth.Verifier, what, token, user string) {
	t.Helper()
	got, err := v.Authenticate(context.Background(), token)
	if user == "" {
		if err == nil || flashorder.ErrorCode(err) != flashorder.EUNAUTHORIZED {
			t.Errorf("%s: got %q %v, want unauthorized", what, got, err)
		}
		return
	}
	if err != nil || got != user {
		t.Errorf("%s: got %q %v, want %q", what, got, err, user)
	}
}

// TestJWKSRotation serves a JWK Set over HTTPS that rotates its keys: tokens
// of the new keys are accepted as soon as they appear (an unknown kid
// fetches the set again), tokens of the retired keys are refused after.
func TestJWKSRotation(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	oldKeys, newKeys := newSigners(t, "1"), newSigners(t, "2")
	var mu sync.Mutex
	served := jwks(t, oldKeys)
	fetches := 0
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(served)
	}))
	defer ts.Close()

	v, err := jwtauth.New(context.Background(), jwtauth.Options{JWKS: ts.URL + "/jwks.json", HTTPClient: ts.Client(),
		RefreshUnknownKID: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, s := range oldKeys {
		wantUser(t, v, s.method.Alg()+" before rotation", s.token(t, good("u-1")), "u-1")
		wantUser(t, v, s.method.Alg()+" new key before rotation", newKeys[0].token(t, good("u-1")), "")
	}

	mu.Lock()
	served = jwks(t, newKeys)
	mu.Unlock()
	for _, s := range newKeys {
		time.Sleep(5 * time.Millisecond) // past the unknown-kid rate limit
		wantUser(t, v, s.method.Alg()+" after rotation", s.token(t, good("u-2")), "u-2")
	}
	for _, s := range oldKeys {
		wantUser(t, v, s.method.Alg()+" retired key", s.token(t, good("u-1")), "")
	}
	mu.Lock()
	if fetches < 2 {
		t.Errorf("the JWK Set was fetched %d times, want a refetch on rotation", fetches)
	}
	mu.Unlock()

	// A key's algorithm is the one it allows: an RSA key's token with
	// HS256 (the public key as secret) or alg none is refused.
	rsaPub := oldKeys[0].key.(*rsa.PrivateKey).Public().(*rsa.PublicKey)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, good("u-1"))
	hs.Header["kid"] = newKeys[0].kid
	forged, _ := hs.SignedString(rsaPub.N.Bytes())
	wantUser(t, v, "HS256 with an RSA kid", forged, "")
	none := jwt.NewWithClaims(jwt.SigningMethodNone, good("u-1"))
	none.Header["kid"] = newKeys[0].kid
	unsigned, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	wantUser(t, v, "alg none", unsigned, "")
}

// TestJWKSFile loads a JWK Set file and picks up a change to it.
func TestJWKSFile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	oldKeys, newKeys := newSigners(t, "1"), newSigners(t, "2")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks(t, oldKeys), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := jwtauth.New(context.Background(), jwtauth.Options{JWKS: path, RefreshInterval: 10 * time.Millisecond,
		Issuer: "iss-1", Audience: "aud-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	claims := func() jwt.MapClaims {
		c := good("u-1")
		c["iss"], c["aud"] = "iss-1", "aud-1"
		return c
	}
	for _, s := range oldKeys {
		wantUser(t, v, s.method.Alg()+" from the file", s.token(t, claims()), "u-1")
	}
	wrongAud := claims()
	wrongAud["aud"] = "aud-2"
	wantUser(t, v, "wrong audience", oldKeys[0].token(t, wrongAud), "")
	wrongIss := claims()
	wrongIss["iss"] = "iss-2"
	wantUser(t, v, "wrong issuer", oldKeys[0].token(t, wrongIss), "")

	if err := os.WriteFile(path, jwks(t, newKeys), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Second)
	_ = os.Chtimes(path, future, future)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Authenticate(context.Background(), newKeys[0].token(t, claims()))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key was not picked up from the changed file: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantUser(t, v, "retired key", oldKeys[1].token(t, claims()), "")
}

// TestSecret checks HS256 tokens and Mint.
func TestSecret(t *testing.T) {
	secret := []byte("s3cret-s3cret-s3cret-s3cret-s3cret")
	v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: secret, Leeway: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok, err := jwtauth.Mint(secret, "u-7", "", "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantUser(t, v, "minted", tok, "u-7")
	expired, _ := jwtauth.Mint(secret, "u-7", "", "", -time.Minute)
	wantUser(t, v, "expired", expired, "")
	other, _ := jwtauth.Mint([]byte("other-secret-other-secret-other"), "u-7", "", "", time.Minute)
	wantUser(t, v, "other secret", other, "")
	badSub, _ := jwtauth.Mint(secret, "u/7", "", "", time.Minute)
	wantUser(t, v, "bad sub", badSub, "")
	wantUser(t, v, "minted, again (remembered)", tok, "u-7")

	// A remembered token still expires: exp plus the leeway (1 s).
	short, _ := jwtauth.Mint(secret, "u-8", "", "", time.Second)
	wantUser(t, v, "short-lived", short, "u-8")
	wantUser(t, v, "short-lived, again", short, "u-8")
	time.Sleep(3 * time.Second)
	wantUser(t, v, "short-lived, past exp and leeway", short, "")

	if _, err := jwtauth.New(context.Background(), jwtauth.Options{}); err == nil {
		t.Error("New without a key: no error")
	}
	if _, err := jwtauth.New(context.Background(), jwtauth.Options{JWKS: "http://example.test/jwks"}); err == nil {
		t.Error("New with a plain-http JWKS URL: no error")
	}
}
