package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/flashorder/flashorder"
)

// ChallengeHeader is the request header that carries a client's challenge
// token: the response of the widget (Cloudflare Turnstile's
// cf-turnstile-response, hCaptcha's h-captcha-response) that the client
// solved before joining the waiting room.
const ChallengeHeader = "Challenge-Token"

// DefaultChallengeTimeout is ChallengeVerifier's default Timeout.
const DefaultChallengeTimeout = 3 * time.Second

// MaxChallengeTokenBytes is the longest token a ChallengeVerifier sends to
// its verifier; a longer one is refused without asking (Turnstile's tokens
// have at most 2,048 characters, hCaptcha's are shorter).
const MaxChallengeTokenBytes = 8192

// maxVerifyAnswer bounds how much of the verifier's answer is read.
const maxVerifyAnswer = 64 << 10

// ChallengeVerifier checks challenge tokens with a siteverify-compatible
// server (orderd's --challenge-verify-url and --challenge-secret): it POSTs
// the form fields secret, response and remoteip and reads the JSON answer's
// success and error-codes, the protocol that Cloudflare Turnstile
// (https://challenges.cloudflare.com/turnstile/v0/siteverify) and hCaptcha
// (https://api.hcaptcha.com/siteverify) both speak.
//
// It fails closed: when the verifier cannot be asked or answers nonsense,
// the join is refused with 503 unavailable (Retry-After) rather than let
// through, since a challenge that anyone passes while the verifier is down
// is no challenge, and an outage of the verifier during a drop would let
// every bot in.
type ChallengeVerifier struct {
	verifyURL string
	secret    string

	// Client sends the verifications. The default (NewChallengeVerifier)
	// keeps up to 64 idle connections to the verifier, since during a drop
	// every join asks it.
	Client *http.Client
	// Timeout bounds one verification, the answer read included. The
	// default (NewChallengeVerifier) is DefaultChallengeTimeout.
	Timeout time.Duration
}

// NewChallengeVerifier returns a verifier that asks the siteverify endpoint
// at verifyURL (http or https) with secret.
func NewChallengeVerifier(verifyURL, secret string) (*ChallengeVerifier, error) {
	u, err := url.Parse(verifyURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http: challenge verify URL %q is not an http or https URL", verifyURL)
	}
	if secret == "" {
		return nil, errors.New("http: challenge secret is empty")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &ChallengeVerifier{
		verifyURL: verifyURL,
		secret:    secret,
		Client:    &http.Client{Transport: tr},
		Timeout:   DefaultChallengeTimeout,
	}, nil
}

// Check verifies the token in r's Challenge-Token header for client, the
// address that TrustedProxies.ClientIP found (sent as remoteip when valid).
// See Verify for its answers.
func (v *ChallengeVerifier) Check(ctx context.Context, r *http.Request, client netip.Addr) error {
	return v.Verify(ctx, headerValue(r.Header, ChallengeHeader), client)
}

// Verify asks the verifier about token, solved by the client at client
// (sent as remoteip when valid). It returns nil when the verifier accepts
// the token; an *flashorder.Error with code challenge_failed (403) for a
// missing, oversized or rejected token; and one with code unavailable (503,
// Retry-After: 1), its cause in Err for the log, when the verifier fails,
// times out, answers other than 200 or with something other than the
// expected JSON, or refuses the secret or the request itself: none of those
// is the client's fault, and none lets it through.
func (v *ChallengeVerifier) Verify(ctx context.Context, token string, client netip.Addr) error {
	token = strings.TrimSpace(token)
	if token == "" {
		return flashorder.Errorf(flashorder.ECHALLENGEFAILED, "a challenge token is required in the %s header", ChallengeHeader)
	}
	if len(token) > MaxChallengeTokenBytes {
		return flashorder.Errorf(flashorder.ECHALLENGEFAILED, "the challenge token is too long")
	}
	codes, err := v.ask(ctx, token, client)
	if err != nil {
		return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the challenge cannot be checked now; retry later", Err: err}
	}
	if codes == nil {
		return nil
	}
	for _, c := range codes {
		if serverSideCode(c) {
			return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the challenge cannot be checked now; retry later",
				Err: fmt.Errorf("http: challenge verifier refused the request: %s", strings.Join(codes, ", "))}
		}
	}
	return flashorder.Errorf(flashorder.ECHALLENGEFAILED, "the challenge was not passed; solve it again")
}

// serverSideCode reports whether a siteverify error code blames the server's
// request (its secret, its form, the verifier itself) rather than the
// client's token.
func serverSideCode(code string) bool {
	switch code {
	case "missing-input-secret", "invalid-input-secret", "bad-request", "internal-error", "sitekey-secret-mismatch":
		return true
	}
	return false
}

// verifyAnswer is a siteverify answer.
type verifyAnswer struct {
	Success    *bool    `json:"success"`
	ErrorCodes []string `json:"error-codes"`
}

// ask posts one verification. It returns nil codes when the token passed,
// the answer's error codes (never nil) when it did not, and an error when
// the verifier gave no usable answer.
func (v *ChallengeVerifier) ask(ctx context.Context, token string, client netip.Addr) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, v.Timeout)
	defer cancel()
	form := url.Values{"secret": {v.secret}, "response": {token}}
	if client.IsValid() {
		form.Set("remoteip", client.String())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.verifyURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("http: challenge verify request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := v.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("http: challenge verify: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxVerifyAnswer))
	if err != nil {
		return nil, fmt.Errorf("http: challenge verify: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("http: challenge verify: status %d", resp.StatusCode)
	}
	var a verifyAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("http: challenge verify: answer is not siteverify JSON: %w", err)
	}
	if a.Success == nil {
		return nil, errors.New("http: challenge verify: answer has no success field")
	}
	if *a.Success {
		return nil, nil
	}
	if a.ErrorCodes == nil {
		a.ErrorCodes = []string{}
	}
	return a.ErrorCodes, nil
}
