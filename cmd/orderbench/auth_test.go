package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/jwtauth"
	"github.com/flashorder/flashorder/loadtest"
)

// TestRunWithAuth runs every named scenario against an embedded orderd with
// auth jwt: orderbench's minted tokens are accepted (no 401), its orders
// are the tokens' users' and the audit passes.
func TestRunWithAuth(t *testing.T) {
	const secret = "bench-jwt-secret-bench-jwt-secret"
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr,
		"--auth", "jwt", "--jwt-secret", secret, "--jwt-issuer", "bench", "--jwt-audience", "orderd")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	for _, scenario := range loadtest.ScenarioNames() {
		js := filepath.Join(t.TempDir(), "r.json")
		load := []string{"--requests", "300"}
		if scenario == "drop" {
			load = []string{"--users", "100", "--stock", "10", "--lead", "1s", "--after", "0s"}
		}
		_, err := runArgs(t, append([]string{"run", "--url", e.URL, "--admin-token", e.AdminToken, "--jwt-secret", secret,
			"--jwt-issuer", "bench", "--jwt-audience", "orderd", "--scenario", scenario, "--sku-prefix", scenario + "-",
			"--concurrency", "8", "--quiet", "--json", js}, load...)...)
		if err != nil {
			t.Errorf("%s with auth: %v", scenario, err)
			continue
		}
		b, err := os.ReadFile(js)
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Config struct {
				Auth bool `json:"auth"`
			} `json:"config"`
			Orders int64 `json:"orders"`
		}
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		if !res.Config.Auth {
			t.Errorf("%s: the results do not record auth", scenario)
		}
		if res.Orders == 0 {
			t.Errorf("%s: no order placed", scenario)
		}
		if strings.Contains(string(b), `"unauthorized"`) || strings.Contains(string(b), `"forbidden"`) {
			t.Errorf("%s: orderd refused orderbench's tokens: %s", scenario, b)
		}
	}

	// Without tokens, the same run is refused: the test above can fail.
	out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--requests", "20", "--concurrency", "2", "--quiet", "--sku-prefix", "noauth-")
	if !strings.Contains(out, "unauthorized") {
		t.Errorf("a run without --jwt-secret was not refused 401 (err %v):\n%s", err, out)
	}
}

// TestTokenCommand checks that `orderbench token` prints a token orderd
// accepts for the user.
func TestTokenCommand(t *testing.T) {
	out, err := runArgs(t, "token", "--jwt-secret", "s3cret-s3cret-s3cret-s3cret-s3cret", "--sub", "u-1")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: []byte("s3cret-s3cret-s3cret-s3cret-s3cret")})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if user, err := v.Authenticate(context.Background(), strings.TrimSpace(out)); err != nil || user != "u-1" {
		t.Errorf("token %q: %q %v", out, user, err)
	}
	if _, err := runArgs(t, "token", "--jwt-secret", "s", "--sub", "bad user"); err == nil {
		t.Error("token for an invalid sub: no error")
	}
}
