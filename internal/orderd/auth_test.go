package orderd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// JWT settings of the auth tests' orderd.
const (
	jwtSecret   = "test-jwt-secret-of-at-least-32-bytes"
	jwtIssuer   = "https://id.example.test"
	jwtAudience = "orderd"
)

// mintToken signs claims (sub, iss, aud and a 10-minute exp by default;
// nil values are left out) with method and key.
func mintToken(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	all := jwt.MapClaims{"iss": jwtIssuer, "aud": jwtAudience, "exp": time.Now().Add(10 * time.Minute).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(all, k)
			continue
		}
		all[k] = v
	}
	s, err := jwt.NewWithClaims(method, all).SignedString(key)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return s
}

// userToken is a good token for sub.
func userToken(t *testing.T, sub string) string {
	return mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": sub})
}

// withToken returns a copy of c that sends token on the order calls.
func withToken(c *orderhttp.Client, token string) *orderhttp.Client {
	cc := *c
	cc.Token = token
	return &cc
}

// wantCode fails unless err is an answer with status and code.
func wantCode(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var ce *orderhttp.ClientError
	if !errors.As(err, &ce) || ce.Status != status || ce.Code != code {
		t.Errorf("%s: got %v, want %d %s", what, err, status, code)
	}
}

// authState is what a refused request must not change: the products' stock
// and every order of the test's users.
type authState struct {
	products []flashorder.Product
	orders   []string
}

func snapshot(t *testing.T, admin *orderhttp.Client, skus, users []string) authState {
	t.Helper()
	ctx := context.Background()
	var st authState
	for _, sku := range skus {
		p, err := admin.Product(ctx, sku)
		if err != nil {
			t.Fatalf("product %s: %v", sku, err)
		}
		st.products = append(st.products, *p)
	}
	for _, u := range users {
		orders, _, err := admin.Orders(ctx, u, 200, "")
		if err != nil {
			t.Fatalf("orders of %s: %v", u, err)
		}
		for _, o := range orders {
			st.orders = append(st.orders, o.ID+" "+o.UserID+" "+string(o.Status))
		}
	}
	return st
}

func (a authState) equal(b authState) bool {
	return slices.Equal(a.products, b.products) && slices.Equal(a.orders, b.orders)
}

// TestAuthJWT runs every rule of --auth jwt end to end on every database.
func TestAuthJWT(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Engine, func(t *testing.T) {
			t.Parallel()
			testAuthJWT(t, db.URL)
		})
	}
}

func testAuthJWT(t *testing.T, dbURL string) {
	ctx := context.Background()
	_, c := startOrderd(t, dbURL, "--auth", "jwt", "--jwt-secret", jwtSecret, "--jwt-issuer", jwtIssuer, "--jwt-audience", jwtAudience)
	sku := "auth-hot"
	putProduct(t, c, sku, 10, 3)
	admin := withToken(c, adminToken)
	alice := withToken(c, userToken(t, "alice"))
	bob := withToken(c, userToken(t, "bob"))
	anon := withToken(c, "")
	users := []string{"alice", "bob"}
	item := flashorder.ItemRequest{SKU: sku, Quantity: 1}

	// Owner: user_id left out is the token's; the same id is accepted.
	r1, err := alice.CreateOrder(ctx, flashorder.OrderRequest{Items: []flashorder.ItemRequest{item}}, "")
	if err != nil || r1.Order.UserID != "alice" {
		t.Fatalf("alice's order without user_id: %+v %v", r1, err)
	}
	r2, err := alice.CreateOrder(ctx, flashorder.OrderRequest{UserID: "alice", Items: []flashorder.ItemRequest{item}}, "k-alice")
	if err != nil || r2.Order.UserID != "alice" {
		t.Fatalf("alice's order with her user_id: %+v %v", r2, err)
	}
	// Admin acts for any user, and must name it.
	r3, err := admin.CreateOrder(ctx, flashorder.OrderRequest{UserID: "bob", Items: []flashorder.ItemRequest{item}}, "")
	if err != nil || r3.Order.UserID != "bob" {
		t.Fatalf("admin's order for bob: %+v %v", r3, err)
	}
	before := snapshot(t, admin, []string{sku}, users)
	refused := func(what string, err error, status int, code string) {
		t.Helper()
		wantCode(t, what, err, status, code)
		if after := snapshot(t, admin, []string{sku}, users); !after.equal(before) {
			t.Errorf("%s changed the state:\n before %+v\n after  %+v", what, before, after)
		}
	}
	_, err = alice.CreateOrder(ctx, flashorder.OrderRequest{UserID: "bob", Items: []flashorder.ItemRequest{item}}, "")
	refused("alice orders as bob", err, 403, flashorder.EFORBIDDEN)
	_, err = admin.CreateOrder(ctx, flashorder.OrderRequest{Items: []flashorder.ItemRequest{item}}, "")
	refused("admin orders without user_id", err, 400, flashorder.EINVALID)

	// Reading: the owner and the admin; another user's order is not found.
	if o, err := alice.Order(ctx, r1.Order.ID); err != nil || o.ID != r1.Order.ID {
		t.Errorf("alice reads her order: %+v %v", o, err)
	}
	if o, err := admin.Order(ctx, r1.Order.ID); err != nil || o.ID != r1.Order.ID {
		t.Errorf("admin reads alice's order: %+v %v", o, err)
	}
	_, err = bob.Order(ctx, r1.Order.ID)
	refused("bob reads alice's order", err, 404, flashorder.ENOTFOUND)
	_, err = bob.Order(ctx, "00000000-0000-0000-0000-000000000000")
	refused("bob reads a missing order", err, 404, flashorder.ENOTFOUND)

	// Lists: the caller's own by default; another user's is forbidden.
	if orders, _, err := alice.Orders(ctx, "", 0, ""); err != nil || len(orders) != 2 || orders[0].UserID != "alice" || orders[1].UserID != "alice" {
		t.Errorf("alice lists her orders: %d %v", len(orders), err)
	}
	if orders, _, err := bob.Orders(ctx, "bob", 0, ""); err != nil || len(orders) != 1 || orders[0].ID != r3.Order.ID {
		t.Errorf("bob lists his orders by name: %d %v", len(orders), err)
	}
	_, _, err = bob.Orders(ctx, "alice", 0, "")
	refused("bob lists alice's orders", err, 403, flashorder.EFORBIDDEN)
	_, _, err = admin.Orders(ctx, "", 0, "")
	refused("admin lists without user_id", err, 400, flashorder.EINVALID)

	// Ending orders: another user's cancel is not found; a user never pays.
	_, err = bob.CancelOrder(ctx, r1.Order.ID)
	refused("bob cancels alice's order", err, 404, flashorder.ENOTFOUND)
	_, err = alice.PayOrder(ctx, r1.Order.ID)
	refused("alice pays her order", err, 403, flashorder.EFORBIDDEN)
	_, err = bob.PayOrder(ctx, r1.Order.ID)
	refused("bob pays alice's order", err, 403, flashorder.EFORBIDDEN)

	// Anonymous and every kind of bad token: 401, nothing changes.
	wrongKey := []byte("another-secret-of-at-least-32-bytes!")
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"anonymous":       "",
		"malformed":       "not.a.jwt",
		"expired":         mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-5 * time.Minute).Unix()}),
		"no exp":          mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": "alice", "exp": nil}),
		"alg none":        mintToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "alice"}),
		"wrong key":       mintToken(t, jwt.SigningMethodHS256, wrongKey, jwt.MapClaims{"sub": "alice"}),
		"HS512":           mintToken(t, jwt.SigningMethodHS512, []byte(jwtSecret), jwt.MapClaims{"sub": "alice"}),
		"ES256 own key":   mintToken(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{"sub": "alice"}),
		"wrong issuer":    mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": "alice", "iss": "https://evil.example.test"}),
		"no issuer":       mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": "alice", "iss": nil}),
		"wrong audience":  mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": "alice", "aud": "another-service"}),
		"no sub":          mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{}),
		"sub with spaces": mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": "alice smith"}),
		"sub with NUL":    mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": "alice\x00"}),
		"sub too long":    mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": strings.Repeat("a", 65)}),
		"not yet valid":   mintToken(t, jwt.SigningMethodHS256, []byte(jwtSecret), jwt.MapClaims{"sub": "alice", "nbf": time.Now().Add(time.Hour).Unix()}),
		"admin-ish":       adminToken + "x",
	}
	for name, token := range bad {
		u := withToken(c, token)
		_, err := u.CreateOrder(ctx, flashorder.OrderRequest{UserID: "alice", Items: []flashorder.ItemRequest{item}}, "")
		refused(name+": create", err, 401, flashorder.EUNAUTHORIZED)
		_, err = u.Order(ctx, r1.Order.ID)
		refused(name+": read", err, 401, flashorder.EUNAUTHORIZED)
		_, _, err = u.Orders(ctx, "alice", 0, "")
		refused(name+": list", err, 401, flashorder.EUNAUTHORIZED)
		_, err = u.CancelOrder(ctx, r1.Order.ID)
		refused(name+": cancel", err, 401, flashorder.EUNAUTHORIZED)
		_, err = u.PayOrder(ctx, r1.Order.ID)
		refused(name+": pay", err, 401, flashorder.EUNAUTHORIZED)
	}
	_ = anon

	// The challenge header, and the scheme in any case.
	req, _ := http.NewRequest("GET", c.BaseURL+"/api/v1/orders/"+r1.Order.ID, nil)
	req.Header.Set("Authorization", "Bearer "+bad["expired"])
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Errorf("expired token: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req.Header.Set("Authorization", "bEARER "+alice.Token)
	resp, err = c.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("scheme bEARER: %d, want 200", resp.StatusCode)
	}

	// Public: products, health, metrics, the OpenAPI document.
	for _, path := range []string{"/api/v1/products/" + sku, "/healthz", "/readyz", "/metrics", "/openapi.json"} {
		resp, err := c.HTTPClient.Get(c.BaseURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s without a token: %d, want 200", path, resp.StatusCode)
		}
	}

	// What the owner and the admin may do, and its effect on stock.
	p0 := getProduct(t, c, sku)
	if o, err := alice.CancelOrder(ctx, r1.Order.ID); err != nil || o.Status != flashorder.StatusCancelled {
		t.Errorf("alice cancels her order: %+v %v", o, err)
	}
	if p := getProduct(t, c, sku); p.Stock != p0.Stock+1 || p.Sold != p0.Sold-1 {
		t.Errorf("stock after alice's cancel: %+v, before %+v", p, p0)
	}
	if o, err := admin.PayOrder(ctx, r2.Order.ID); err != nil || o.Status != flashorder.StatusPaid {
		t.Errorf("admin pays alice's order: %+v %v", o, err)
	}
	if o, err := admin.CancelOrder(ctx, r3.Order.ID); err != nil || o.Status != flashorder.StatusCancelled {
		t.Errorf("admin cancels bob's order: %+v %v", o, err)
	}
	// The per-user limit (3) holds per token: a user cannot invent ids.
	for i := range 3 {
		_, err := alice.CreateOrder(ctx, flashorder.OrderRequest{Items: []flashorder.ItemRequest{item}}, "")
		if i < 2 && err != nil {
			t.Errorf("alice's order %d within her limit: %v", i, err)
		}
		if i == 2 {
			wantCode(t, "alice's order past her limit", err, 409, flashorder.ELIMITEXCEEDED)
		}
	}
	assertAudit(t, c)
}

// TestAuthFlags checks the --auth settings orderd refuses, and the warning
// for auth none on an address other machines reach.
func TestAuthFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--auth", "basic"},
		{"--auth", "jwt"},
		{"--auth", "jwt", "--jwt-secret", "s", "--jwt-jwks", "/nonexistent/jwks.json"},
		{"--auth", "jwt", "--jwt-jwks", "/nonexistent/jwks.json"},
		{"--auth", "jwt", "--jwt-jwks", "http://id.example.test/jwks.json"},
		{"--jwt-secret", "s"},
	} {
		m := NewMain(io.Discard)
		all := append([]string{"--listen", "127.0.0.1:0", "--db", testenv.SQLiteURL(t)}, args...)
		if err := startErr(context.Background(), m, all...); err == nil {
			t.Errorf("%v: orderd started", args)
		}
	}

	m, _ := startOrderd(t, testenv.SQLiteURL(t))
	if logs := m.stderr.(*problemLog).String(); strings.Contains(logs, "--auth none") {
		t.Errorf("auth none on loopback warned:\n%s", logs)
	}
	m, _ = startOrderd(t, testenv.SQLiteURL(t), "--listen", ":0")
	if logs := m.stderr.(*problemLog).String(); !strings.Contains(logs, "--auth none") {
		t.Errorf("auth none on every interface did not warn:\n%s", logs)
	}
}
