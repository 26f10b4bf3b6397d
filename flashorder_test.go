package flashorder_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/flashorder/flashorder"
)

func TestOrderRequestValidate(t *testing.T) {
	items := func(n int) []flashorder.ItemRequest {
		out := make([]flashorder.ItemRequest, n)
		for i := range out {
			out[i] = flashorder.ItemRequest{SKU: fmt.Sprintf("sku-%d", i), Quantity: 1}
		}
		return out
	}
	one := []flashorder.ItemRequest{{SKU: "hot-1", Quantity: 1}}
	tests := []struct {
		name string
		req  flashorder.OrderRequest
		ok   bool
	}{
		{"valid", flashorder.OrderRequest{UserID: "u-42", Items: one}, true},
		{"user id charset", flashorder.OrderRequest{UserID: "A.z_0:9-", Items: one}, true},
		{"20 items", flashorder.OrderRequest{UserID: "u", Items: items(20)}, true},
		{"quantity 1000", flashorder.OrderRequest{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 1000}}}, true},
		{"64-char ids", flashorder.OrderRequest{UserID: strings.Repeat("u", 64), Items: []flashorder.ItemRequest{{SKU: strings.Repeat("s", 64), Quantity: 1}}}, true},
		{"no user", flashorder.OrderRequest{Items: one}, false},
		{"user too long", flashorder.OrderRequest{UserID: strings.Repeat("u", 65), Items: one}, false},
		{"user slash", flashorder.OrderRequest{UserID: "a/b", Items: one}, false},
		{"user unicode", flashorder.OrderRequest{UserID: "ü", Items: one}, false},
		{"no items", flashorder.OrderRequest{UserID: "u"}, false},
		{"21 items", flashorder.OrderRequest{UserID: "u", Items: items(21)}, false},
		{"duplicate sku", flashorder.OrderRequest{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 1}, {SKU: "a", Quantity: 2}}}, false},
		{"quantity 0", flashorder.OrderRequest{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 0}}}, false},
		{"quantity 1001", flashorder.OrderRequest{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 1001}}}, false},
		{"sku colon", flashorder.OrderRequest{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a:b", Quantity: 1}}}, false},
		{"sku too long", flashorder.OrderRequest{UserID: "u", Items: []flashorder.ItemRequest{{SKU: strings.Repeat("s", 65), Quantity: 1}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if tt.ok && err != nil {
				t.Fatalf("want valid, got %v", err)
			}
			if !tt.ok && flashorder.ErrorCode(err) != flashorder.EINVALID {
				t.Fatalf("want invalid_request, got %v", err)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	a := flashorder.OrderRequest{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 1}, {SKU: "b", Quantity: 2}}}
	same := flashorder.OrderRequest{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 1}, {SKU: "b", Quantity: 2}}}
	if a.Fingerprint() != same.Fingerprint() {
		t.Fatal("equal requests, different fingerprints")
	}
	others := []flashorder.OrderRequest{
		{UserID: "v", Items: a.Items},
		{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 1}, {SKU: "b", Quantity: 3}}},
		{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 12}}},
		{UserID: "u", Items: []flashorder.ItemRequest{{SKU: "a1", Quantity: 2}}},
	}
	for _, o := range others {
		if o.Fingerprint() == a.Fingerprint() {
			t.Fatalf("%+v has the fingerprint of %+v", o, a)
		}
	}
}

func TestProductInput(t *testing.T) {
	s := func(v string) *string { return &v }
	i := func(v int64) *int64 { return &v }
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		name string
		sku  string
		in   flashorder.ProductInput
		ok   bool
	}{
		{"valid", "p-1", flashorder.ProductInput{Name: s("Phone"), PriceCents: i(199900), Stock: i(100), PerUserLimit: i(1)}, true},
		{"no limit given", "p-1", flashorder.ProductInput{Name: s("Phone"), PriceCents: i(0), Stock: i(0)}, true},
		{"bad sku", "p 1", flashorder.ProductInput{Name: s("Phone"), PriceCents: i(1), Stock: i(1)}, false},
		{"no name", "p-1", flashorder.ProductInput{PriceCents: i(1), Stock: i(1)}, false},
		{"name 201 runes", "p-1", flashorder.ProductInput{Name: s(strings.Repeat("é", 201)), PriceCents: i(1), Stock: i(1)}, false},
		{"name 200 runes", "p-1", flashorder.ProductInput{Name: s(strings.Repeat("é", 200)), PriceCents: i(1), Stock: i(1)}, true},
		{"no price", "p-1", flashorder.ProductInput{Name: s("x"), Stock: i(1)}, false},
		{"negative price", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(-1), Stock: i(1)}, false},
		{"price too big", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(flashorder.MaxPriceCents + 1), Stock: i(1)}, false},
		{"no stock", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1)}, false},
		{"negative stock", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(-1)}, false},
		{"negative limit", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), PerUserLimit: i(-1)}, false},
		{"queue", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Admission: s("queue")}, true},
		{"open", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Admission: s("open")}, true},
		{"queue of a sale, factor", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Admission: s("queue"),
			Sale: s("drop-7"), AdmissionFactor: f(2.5)}, true},
		{"admission other", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Admission: s("Queue")}, false},
		{"sale without queue", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Sale: s("drop")}, false},
		{"bad sale id", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Admission: s("queue"), Sale: s("a b")}, false},
		{"factor without queue", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), AdmissionFactor: f(2)}, false},
		{"factor below 1", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Admission: s("queue"), AdmissionFactor: f(0.9)}, false},
		{"factor above 100", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Admission: s("queue"), AdmissionFactor: f(101)}, false},
		{"factor NaN", "p-1", flashorder.ProductInput{Name: s("x"), PriceCents: i(1), Stock: i(1), Admission: s("queue"), AdmissionFactor: f(math.NaN())}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.in.Product(tt.sku)
			if tt.ok != (err == nil) {
				t.Fatalf("ok=%v, got %v", tt.ok, err)
			}
			if err != nil && flashorder.ErrorCode(err) != flashorder.EINVALID {
				t.Fatalf("want invalid_request, got %v", err)
			}
		})
	}
}

func TestErrorCodeAndMessage(t *testing.T) {
	e := flashorder.Errorf(flashorder.ESOLDOUT, "gone")
	wrapped := fmt.Errorf("ctx: %w", e)
	if flashorder.ErrorCode(wrapped) != flashorder.ESOLDOUT || flashorder.ErrorMessage(wrapped) != "gone" {
		t.Fatalf("wrapped: %q %q", flashorder.ErrorCode(wrapped), flashorder.ErrorMessage(wrapped))
	}
	internal := errors.New("dial tcp 10.0.0.1:5432: secret detail")
	if flashorder.ErrorCode(internal) != flashorder.EINTERNAL || strings.Contains(flashorder.ErrorMessage(internal), "secret") {
		t.Fatal("an internal error leaks its details")
	}
	if flashorder.ErrorCode(nil) != "" {
		t.Fatal("nil has a code")
	}
}

func TestValidateIdempotencyKey(t *testing.T) {
	for key, ok := range map[string]bool{"k": true, strings.Repeat("k", 255): true, "a b~!": true,
		"": false, strings.Repeat("k", 256): false, "tab\t": false, "ü": false, "\x7f": false} {
		if err := flashorder.ValidateIdempotencyKey(key); ok != (err == nil) {
			t.Errorf("%q: ok=%v, got %v", key, ok, err)
		}
	}
}
