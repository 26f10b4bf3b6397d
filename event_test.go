package flashorder_test

import (
	"encoding/json"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
)

// TestCloudEvent checks an event's JSON against CloudEvents 1.0 (the core
// spec and its JSON format): the required attributes specversion, id,
// source and type are non-empty strings, specversion "1.0", source a URI
// reference; the optional ones used (subject, time, datacontenttype) are
// well formed; every other attribute name is lower-case letters and digits;
// and with datacontenttype application/json, data is the JSON value itself.
func TestCloudEvent(t *testing.T) {
	order := json.RawMessage(`{"id":"o-1","user_id":"u-1","status":"paid","items":[{"sku":"s","quantity":1,"price_cents":5}],"total_cents":5,"created_at":"2026-01-02T03:04:05.000006Z"}`)
	e := &flashorder.Event{ID: "0190e3a4-0000-7000-8000-000000000001", OrderID: "o-1", Type: flashorder.EventOrderPaid,
		Sequence: 2, Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Order: order}
	raw, err := e.CloudEvent("/flashorder/orders")
	if err != nil {
		t.Fatal(err)
	}
	var ce map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ce); err != nil {
		t.Fatal(err)
	}
	str := func(name string) string {
		t.Helper()
		var s string
		if err := json.Unmarshal(ce[name], &s); err != nil {
			t.Errorf("%s: not a string: %s", name, ce[name])
		}
		return s
	}
	for _, name := range []string{"specversion", "id", "source", "type"} {
		if str(name) == "" {
			t.Errorf("required attribute %s is missing or empty", name)
		}
	}
	if v := str("specversion"); v != "1.0" {
		t.Errorf("specversion %q, want 1.0", v)
	}
	if _, err := url.Parse(str("source")); err != nil {
		t.Errorf("source is not a URI reference: %v", err)
	}
	if str("id") != e.ID || str("type") != "order.paid" || str("subject") != "o-1" || str("datacontenttype") != "application/json" {
		t.Errorf("attributes: %s", raw)
	}
	if ts, err := time.Parse(time.RFC3339, str("time")); err != nil || !ts.Equal(e.Time) {
		t.Errorf("time %q: not the event's RFC 3339 time (%v)", str("time"), err)
	}
	name := regexp.MustCompile(`^[a-z0-9]{1,20}$`)
	for k := range ce {
		if !name.MatchString(k) {
			t.Errorf("attribute name %q: CloudEvents allows lower-case letters and digits only", k)
		}
	}
	if string(ce["data"]) != string(order) {
		t.Errorf("data is %s, want the order JSON itself", ce["data"])
	}
	if string(ce["orderseq"]) != "2" {
		t.Errorf("orderseq %s, want 2", ce["orderseq"])
	}
}

// TestEventTypeFor checks that every status an order can enter names its
// event type, and that EventType.Status gives the status back.
func TestEventTypeFor(t *testing.T) {
	for s, want := range map[flashorder.Status]flashorder.EventType{
		flashorder.StatusCreated:   flashorder.EventOrderCreated,
		flashorder.StatusPaid:      flashorder.EventOrderPaid,
		flashorder.StatusCancelled: flashorder.EventOrderCancelled,
		flashorder.StatusExpired:   flashorder.EventOrderExpired,
	} {
		if got := flashorder.EventTypeFor(s); got != want {
			t.Errorf("EventTypeFor(%s) = %s, want %s", s, got, want)
		}
		if got := want.Status(); got != s {
			t.Errorf("%s.Status() = %q, want %s", want, got, s)
		}
	}
	for _, bad := range []flashorder.EventType{"", "paid", "order.shipped", "com.example.order.paid"} {
		if got := bad.Status(); got != "" {
			t.Errorf("%q.Status() = %q, want none", bad, got)
		}
	}
}

// TestParseCursor checks the admin feed's cursors.
func TestParseCursor(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "42": 42} {
		if c, ok := flashorder.ParseCursor(in); !ok || c != want {
			t.Errorf("ParseCursor(%q) = %d, %v", in, c, ok)
		}
		if in != "" && flashorder.FormatCursor(want) != in {
			t.Errorf("FormatCursor(%d) = %q", want, flashorder.FormatCursor(want))
		}
	}
	for _, in := range []string{"-1", "x", "1.5", "99999999999999999999"} {
		if _, ok := flashorder.ParseCursor(in); ok {
			t.Errorf("ParseCursor(%q) accepted", in)
		}
	}
}
