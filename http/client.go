package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/flashorder/flashorder"
)

// Client is a Go client for the API. Failed calls return *ClientError.
type Client struct {
	// BaseURL is the server's URL, such as http://127.0.0.1:8080.
	BaseURL string
	// AdminToken is sent as a bearer token on admin calls.
	AdminToken string
	// Token, when set, is sent as a bearer token on the order calls
	// (CreateOrder, Order, Orders, PayOrder, CancelOrder): a user's JWT
	// when orderd runs with auth jwt, or the admin token to act for any
	// user and to pay.
	Token string
	// HTTPClient does the requests; the default is http.DefaultClient.
	HTTPClient *http.Client
}

// NewClient returns a client for the server at baseURL.
func NewClient(baseURL, adminToken string) *Client {
	return &Client{BaseURL: baseURL, AdminToken: adminToken, HTTPClient: http.DefaultClient}
}

// ClientError is an error answer from the server.
type ClientError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the Retry-After header, when the server sent one.
	RetryAfter string
}

// Error implements the error interface.
func (e *ClientError) Error() string {
	return fmt.Sprintf("orderhttp: %d %s: %s", e.Status, e.Code, e.Message)
}

// CreateResult is the answer to CreateOrder.
type CreateResult struct {
	Order    *flashorder.Order
	Location string
	// Replayed is true when the server replayed an earlier answer for the
	// same Idempotency-Key.
	Replayed bool
}

// PutProduct creates or replaces a product (admin).
func (c *Client) PutProduct(ctx context.Context, p flashorder.Product) (*flashorder.Product, error) {
	in := flashorder.ProductInput{Name: &p.Name, PriceCents: &p.PriceCents, Stock: &p.Stock, PerUserLimit: &p.PerUserLimit}
	if p.StartsAt != nil {
		s := p.StartsAt.Format(time.RFC3339Nano)
		in.StartsAt = &s
	}
	if p.EndsAt != nil {
		s := p.EndsAt.Format(time.RFC3339Nano)
		in.EndsAt = &s
	}
	if p.PaymentWindow > 0 {
		s := p.PaymentWindow.String()
		in.PaymentWindow = &s
	}
	var out flashorder.Product
	_, err := c.do(ctx, http.MethodPut, "/api/v1/products/"+url.PathEscape(p.SKU), nil, in, true, &out)
	return &out, err
}

// Product returns a product.
func (c *Client) Product(ctx context.Context, sku string) (*flashorder.Product, error) {
	var out flashorder.Product
	_, err := c.do(ctx, http.MethodGet, "/api/v1/products/"+url.PathEscape(sku), nil, nil, false, &out)
	return &out, err
}

// CreateOrder places an order; key is the Idempotency-Key, none when empty.
func (c *Client) CreateOrder(ctx context.Context, req flashorder.OrderRequest, key string) (*CreateResult, error) {
	h := http.Header{}
	if key != "" {
		h.Set(IdempotencyKeyHeader, key)
	}
	var o flashorder.Order
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/orders", h, req, false, &o)
	if err != nil {
		return nil, err
	}
	return &CreateResult{Order: &o, Location: resp.Header.Get("Location"), Replayed: resp.Header.Get(ReplayedHeader) == "true"}, nil
}

// Order returns an order.
func (c *Client) Order(ctx context.Context, id string) (*flashorder.Order, error) {
	var out flashorder.Order
	_, err := c.do(ctx, http.MethodGet, "/api/v1/orders/"+url.PathEscape(id), nil, nil, false, &out)
	return &out, err
}

// Orders returns one page of a user's orders, newest first, and the cursor of
// the next page ("" on the last). An empty userID is left out of the query:
// with auth jwt, the token's user.
func (c *Client) Orders(ctx context.Context, userID string, limit int, cursor string) ([]*flashorder.Order, string, error) {
	q := url.Values{}
	if userID != "" { // with auth jwt, the token's user
		q.Set("user_id", userID)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var out orderList
	_, err := c.do(ctx, http.MethodGet, "/api/v1/orders?"+q.Encode(), nil, nil, false, &out)
	return out.Orders, out.NextCursor, err
}

// Audit runs the admin stock audit.
func (c *Client) Audit(ctx context.Context) (*flashorder.Audit, error) {
	var out flashorder.Audit
	_, err := c.do(ctx, http.MethodGet, "/api/v1/admin/audit", nil, nil, true, &out)
	return &out, err
}

func (c *Client) do(ctx context.Context, method, path string, h http.Header, in any, admin bool, out any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("orderhttp: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("orderhttp: %w", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case admin:
		req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("orderhttp: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("orderhttp: read answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		_ = json.Unmarshal(data, &eb)
		return resp, &ClientError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, RetryAfter: resp.Header.Get("Retry-After")}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp, fmt.Errorf("orderhttp: decode answer to %s %s: %w", method, path, err)
	}
	return resp, nil
}
