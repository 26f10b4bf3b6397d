package orderd

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/flashorder/flashorder/jwtauth"
)

// openAuth returns the --auth jwt verifier, or nil for --auth none.
func (m *Main) openAuth(ctx context.Context) (*jwtauth.Verifier, error) {
	cfg := &m.Config
	if cfg.Auth != "jwt" {
		return nil, nil
	}
	v, err := jwtauth.New(ctx, jwtauth.Options{Secret: []byte(cfg.JWTSecret), JWKS: cfg.JWTJWKS,
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Logger: m.Logger})
	if err != nil {
		return nil, fmt.Errorf("--auth jwt: %w", err)
	}
	return v, nil
}

// loopback reports whether addr is reachable from this machine only.
func loopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// secretFlags are the flags whose values pprof's cmdline does not show.
var secretFlags = map[string]bool{"admin-token": true, "payment-webhook-secret": true, "jwt-secret": true}

// urlFlags are the flags whose URLs may hold a password.
var urlFlags = map[string]bool{"db": true, "lock": true, "idempotency": true, "rate-limit-store": true, "jwt-jwks": true}

// redactArgs returns args with the values of secret flags replaced and the
// passwords in URL flags redacted.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	redact := func(name, v string) string {
		switch {
		case secretFlags[name]:
			return "REDACTED"
		case urlFlags[name]:
			return redactURL(v)
		}
		return v
	}
	for i := 0; i < len(args); i++ {
		out[i] = args[i]
		if !strings.HasPrefix(args[i], "-") {
			continue
		}
		name := strings.TrimLeft(args[i], "-") // -name or --name
		if n, v, eq := strings.Cut(name, "="); eq {
			out[i] = args[i][:len(args[i])-len(v)] + redact(n, v)
			continue
		}
		if (secretFlags[name] || urlFlags[name]) && i+1 < len(args) {
			i++
			out[i] = redact(name, args[i])
		}
	}
	return out
}

// redactedCmdline is pprof's cmdline endpoint without the secrets: the
// command line, NUL-separated, as redactArgs leaves it.
func redactedCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, strings.Join(append(os.Args[:1:1], redactArgs(os.Args[1:])...), "\x00"))
}
