// Package jwtauth verifies users' JSON Web Tokens for orderd: HS256 with a
// shared secret, or RS256, ES256 and EdDSA with the keys of a JWK Set (a file,
// or an https URL that is refreshed). Parsing and signature checks are
// github.com/golang-jwt/jwt/v5; key sets are github.com/MicahParks/keyfunc/v3.
package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/flashorder/flashorder"
)

var _ flashorder.Authenticator = (*Verifier)(nil)

// DefaultLeeway is the clock skew allowed between the token's issuer and
// orderd when checking exp and nbf.
const DefaultLeeway = 30 * time.Second

// DefaultRefreshInterval is how often a JWK Set is fetched (URL) or checked
// for changes (file).
const DefaultRefreshInterval = time.Hour

// DefaultRefreshUnknownKID is the least time between two fetches of a JWK Set
// URL caused by a token whose kid the set does not have (a key rotated in):
// an attacker sending made-up kids cannot make orderd hammer the issuer.
const DefaultRefreshUnknownKID = time.Minute

// Methods allowed per kind of key: a token can never pick an algorithm its
// key was not meant for, and never "none".
var (
	secretMethods = []string{jwt.SigningMethodHS256.Alg()}
	jwksMethods   = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg()}
)

// Options configures a Verifier. Exactly one of Secret and JWKS is required.
type Options struct {
	// Secret is the HS256 key shared with the token issuer.
	Secret []byte
	// JWKS is a JWK Set file path or https URL holding the issuer's RS256,
	// ES256 or EdDSA public keys.
	JWKS string
	// Issuer, when set, must be the token's iss claim.
	Issuer string
	// Audience, when set, must be among the token's aud claim.
	Audience string
	// Leeway is the clock skew allowed; 0 means DefaultLeeway.
	Leeway time.Duration
	// RefreshInterval is how often the JWK Set is refreshed; 0 means
	// DefaultRefreshInterval.
	RefreshInterval time.Duration
	// RefreshUnknownKID is the least time between fetches of a JWKS URL
	// caused by an unknown kid; 0 means DefaultRefreshUnknownKID.
	RefreshUnknownKID time.Duration
	// HTTPClient fetches a JWKS URL; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives refresh failures; nil means slog.Default().
	Logger *slog.Logger
}

// With a secret, whose key never changes under orderd, verified tokens are
// remembered, so that a user's next orders with the same token skip parsing
// it again (the parse is most of auth's cost per order): cacheShards shards
// of at most cacheShardSize tokens each, each token for at most cacheTTL and
// never past its exp. Tokens of a JWKS are parsed every time, so that a key
// that leaves the set stops being accepted at once.
const (
	cacheShards    = 64
	cacheShardSize = 256
	cacheTTL       = time.Minute
)

// Verifier checks tokens and returns their sub claim.
type Verifier struct {
	parser  *jwt.Parser
	leeway  time.Duration
	cached  bool // remember verified tokens (secret only)
	seed    maphash.Seed
	cache   [cacheShards]tokenShard
	keyfunc jwt.Keyfunc
	// keys is the current key set of a JWKS file, swapped on change.
	keys   atomic.Pointer[keyfunc.Keyfunc]
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Verifier for opts. A JWKS is loaded before New returns, so
// that a wrong path or URL fails at start; refreshing runs until Close.
func New(ctx context.Context, opts Options) (*Verifier, error) {
	if (len(opts.Secret) == 0) == (opts.JWKS == "") {
		return nil, errors.New("jwtauth: set exactly one of a secret and a JWKS")
	}
	if opts.Leeway <= 0 {
		opts.Leeway = DefaultLeeway
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.RefreshUnknownKID <= 0 {
		opts.RefreshUnknownKID = DefaultRefreshUnknownKID
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	methods := jwksMethods
	if len(opts.Secret) > 0 {
		methods = secretMethods
	}
	popts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(opts.Leeway)}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	v := &Verifier{parser: jwt.NewParser(popts...), leeway: opts.Leeway, seed: maphash.MakeSeed(), cancel: func() {}}
	switch {
	case len(opts.Secret) > 0:
		secret := opts.Secret
		v.cached = true
		v.keyfunc = func(*jwt.Token) (any, error) { return secret, nil }
	case strings.HasPrefix(opts.JWKS, "https://"):
		if err := v.openURL(ctx, opts); err != nil {
			return nil, err
		}
	case strings.Contains(opts.JWKS, "://"):
		return nil, fmt.Errorf("jwtauth: JWKS %q: want a file path or an https URL", opts.JWKS)
	default:
		if err := v.openFile(ctx, opts); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// openURL fetches the key set at opts.JWKS and refreshes it in the
// background, and at once (rate-limited) when a token names an unknown kid.
func (v *Verifier) openURL(ctx context.Context, opts Options) error {
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	failFirst := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{opts.JWKS}, keyfunc.Override{
		Client:                    client,
		NoErrorReturnFirstHTTPReq: &failFirst,
		RefreshInterval:           opts.RefreshInterval,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(opts.RefreshUnknownKID), 1),
		RateLimitWaitMax:          time.Second,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				opts.Logger.Warn("jwtauth: refresh JWKS failed; keeping the keys fetched before", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		cancel()
		return fmt.Errorf("jwtauth: JWKS %s: %w", opts.JWKS, err)
	}
	v.cancel = cancel
	v.keyfunc = kf.KeyfuncCtx(ctx)
	return nil
}

// openFile loads the key set in the file opts.JWKS and reloads it when the
// file changes.
func (v *Verifier) openFile(ctx context.Context, opts Options) error {
	path := opts.JWKS
	mtime, err := v.loadFile(path)
	if err != nil {
		return err
	}
	v.keyfunc = func(t *jwt.Token) (any, error) { return (*v.keys.Load()).Keyfunc(t) }
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel = cancel
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		tick := time.NewTicker(opts.RefreshInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if fi, err := os.Stat(path); err == nil && fi.ModTime().Equal(mtime) {
				continue
			}
			if mtime, err = v.loadFile(path); err != nil {
				opts.Logger.Warn("jwtauth: reload JWKS failed; keeping the keys loaded before", "err", err)
			}
		}
	}()
	return nil
}

// loadFile reads the key set in path and makes it current.
func (v *Verifier) loadFile(path string) (time.Time, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("jwtauth: JWKS: %w", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("jwtauth: JWKS: %w", err)
	}
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("jwtauth: JWKS %s: %w", path, err)
	}
	v.keys.Store(&kf)
	return fi.ModTime(), nil
}

// Close stops refreshing the key set.
func (v *Verifier) Close() {
	v.cancel()
	v.wg.Wait()
}

// Authenticate implements flashorder.Authenticator: it returns the sub claim
// of a token that is well signed, unexpired and for this service.
func (v *Verifier) Authenticate(_ context.Context, token string) (string, error) {
	now := time.Now()
	var sh *tokenShard
	if v.cached {
		sh = &v.cache[maphash.String(v.seed, token)%cacheShards]
		if sub, ok := sh.get(token, now); ok {
			return sub, nil
		}
	}
	var claims jwt.RegisteredClaims
	if _, err := v.parser.ParseWithClaims(token, &claims, v.keyfunc); err != nil {
		return "", refusal(err)
	}
	if flashorder.ValidateUserID(claims.Subject) != nil {
		return "", flashorder.Errorf(flashorder.EUNAUTHORIZED, "the token's sub must be a valid user id (1..64 characters of A-Z a-z 0-9 _ . : -)")
	}
	if sh != nil {
		until := now.Add(cacheTTL)
		if exp := claims.ExpiresAt.Add(v.leeway); exp.Before(until) {
			until = exp
		}
		sh.put(token, claims.Subject, until)
	}
	return claims.Subject, nil
}

// tokenShard is one shard of the verified tokens: the sub of each, and until
// when it may be answered without parsing the token again.
type tokenShard struct {
	mu     sync.Mutex
	tokens map[string]cachedToken
}

type cachedToken struct {
	sub   string
	until time.Time
}

func (sh *tokenShard) get(token string, now time.Time) (string, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t, ok := sh.tokens[token]
	if !ok || !now.Before(t.until) {
		return "", false
	}
	return t.sub, true
}

// put remembers a verified token. A full shard starts over: simpler than an
// LRU, and a token dropped is only parsed again.
func (sh *tokenShard) put(token, sub string, until time.Time) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.tokens == nil || len(sh.tokens) >= cacheShardSize {
		sh.tokens = make(map[string]cachedToken, cacheShardSize)
	}
	sh.tokens[token] = cachedToken{sub: sub, until: until}
}

// refusal turns a parse error into the client-safe reason.
func refusal(err error) error {
	msg := "the bearer token is not valid"
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		msg = "the bearer token is not a well-formed JWT"
	case errors.Is(err, jwt.ErrTokenExpired):
		msg = "the bearer token has expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		msg = "the bearer token lacks a required claim (exp)"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		msg = "the bearer token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		msg = "the bearer token is from another issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		msg = "the bearer token is for another audience"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		msg = "the bearer token's signature or algorithm is not accepted"
	}
	return &flashorder.Error{Code: flashorder.EUNAUTHORIZED, Message: msg, Err: err}
}

// Mint returns an HS256 token for sub under secret, valid for ttl, with the
// iss and aud claims when issuer and audience are set: tokens for tests and
// load tests (orderbench token), not a token service.
func Mint(secret []byte, sub, issuer, audience string, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := jwt.RegisteredClaims{Subject: sub, Issuer: issuer, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}
	if audience != "" {
		claims.Audience = jwt.ClaimStrings{audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
