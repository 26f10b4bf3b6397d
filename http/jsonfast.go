package http

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/queue"
)

// This file holds the order path's JSON fast paths. Each one handles the
// common case by hand and hands everything else to encoding/json, so that
// the answers stay byte for byte those of encoding/json: the fast parser
// takes only bodies that encoding/json decodes to the same value without an
// error, and the encoders write what json.Marshal writes (the tests compare
// both on random input).

// span is a string's bytes in the body being parsed: b[start:end].
type span struct{ start, end int }

// orderParser parses an order request body by hand. It refuses (ok false)
// anything outside the plain shape {"user_id":"…","items":[{"sku":"…",
// "quantity":N}]}: escapes and non-ASCII in strings, keys that are not exactly
// the fields' names or come twice, null, numbers that are not plain integers,
// more than flashorder.MaxItems items, trailing data. The caller then decodes
// the body with encoding/json, which gives the error or the odd value.
type orderParser struct {
	b    []byte
	i    int
	user span
	skus [flashorder.MaxItems]span
	qtys [flashorder.MaxItems]int64
	n    int
}

func (p *orderParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips whitespace and consumes c, or reports that it is not there.
func (p *orderParser) next(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str consumes a string of printable ASCII without escapes.
func (p *orderParser) str() (span, bool) {
	if !p.next('"') {
		return span{}, false
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return span{start, p.i - 1}, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return span{}, false
		}
	}
	return span{}, false
}

// key consumes an object key and its colon.
func (p *orderParser) key() ([]byte, bool) {
	k, ok := p.str()
	if !ok || !p.next(':') {
		return nil, false
	}
	return p.b[k.start:k.end], true
}

// integer consumes a plain JSON integer, 0 or 1..18 digits without a sign,
// that ends where a number must end here.
func (p *orderParser) integer() (int64, bool) {
	p.ws()
	start := p.i
	var v int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		v = v*10 + int64(p.b[p.i]-'0')
		p.i++
	}
	n := p.i - start
	if n == 0 || n > 18 || (n > 1 && p.b[start] == '0') || p.i == len(p.b) {
		return 0, false
	}
	switch p.b[p.i] {
	case ' ', '\t', '\n', '\r', ',', '}':
		return v, true
	}
	return 0, false
}

// object consumes an object whose members field parses, key by key.
func (p *orderParser) object(field func(key []byte) bool) bool {
	if !p.next('{') {
		return false
	}
	if p.next('}') {
		return true
	}
	for {
		k, ok := p.key()
		if !ok || !field(k) {
			return false
		}
		if p.next('}') {
			return true
		}
		if !p.next(',') {
			return false
		}
	}
}

// item consumes one element of items.
func (p *orderParser) item() bool {
	if p.n == len(p.skus) {
		return false
	}
	var sku, qty bool
	ok := p.object(func(k []byte) bool {
		var ok bool
		switch {
		case string(k) == "sku" && !sku:
			sku = true
			p.skus[p.n], ok = p.str()
		case string(k) == "quantity" && !qty:
			qty = true
			p.qtys[p.n], ok = p.integer()
		}
		return ok
	})
	p.n++
	return ok
}

// itemList consumes the items array.
func (p *orderParser) itemList() bool {
	if !p.next('[') {
		return false
	}
	if p.next(']') {
		return true
	}
	for {
		if !p.item() {
			return false
		}
		if p.next(']') {
			return true
		}
		if !p.next(',') {
			return false
		}
	}
}

// parseOrderRequest parses b into req when b has the plain shape (see
// orderParser), and reports whether it did; req is unchanged when it did
// not. The strings of req share one allocation, and Items uses the backing
// array req.Items brings when it is large enough (orderRequest lends one).
func parseOrderRequest(b []byte, req *flashorder.OrderRequest) bool {
	p := orderParser{b: b}
	var user, items bool
	ok := p.object(func(k []byte) bool {
		switch {
		case string(k) == "user_id" && !user:
			user = true
			var ok bool
			p.user, ok = p.str()
			return ok
		case string(k) == "items" && !items:
			items = true
			return p.itemList()
		}
		return false
	})
	if p.ws(); !ok || p.i != len(b) {
		return false
	}
	var all strings.Builder
	all.Grow(p.user.end - p.user.start + p.skusLen())
	all.Write(b[p.user.start:p.user.end])
	for _, s := range p.skus[:p.n] {
		all.Write(b[s.start:s.end])
	}
	str := all.String()
	spare := req.Items[:0] // a backing array the caller lent, if any
	*req = flashorder.OrderRequest{UserID: str[:p.user.end-p.user.start]}
	if items {
		if p.n > 0 && cap(spare) >= p.n {
			req.Items = spare[:p.n]
		} else {
			req.Items = make([]flashorder.ItemRequest, p.n)
		}
	}
	at := len(req.UserID)
	for i, s := range p.skus[:p.n] {
		req.Items[i] = flashorder.ItemRequest{SKU: str[at : at+s.end-s.start], Quantity: p.qtys[i]}
		at += s.end - s.start
	}
	return true
}

func (p *orderParser) skusLen() int {
	n := 0
	for _, s := range p.skus[:p.n] {
		n += s.end - s.start
	}
	return n
}

// appendString appends s as json.Marshal encodes it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s) // rare escapes: leave them to encoding/json
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	// Quotes and backslashes, as in the messages that quote a SKU, are
	// escaped here: every refusal's message has them.
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', c)
			start = i + 1
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// encodeOrder returns o's JSON, as json.Marshal writes it.
func encodeOrder(o *flashorder.Order) []byte {
	b := make([]byte, 0, 208+len(o.ID)+len(o.UserID)+len(o.Items)*64)
	b = append(b, `{"id":`...)
	b = appendString(b, o.ID)
	b = append(b, `,"user_id":`...)
	b = appendString(b, o.UserID)
	b = append(b, `,"status":`...)
	b = appendString(b, string(o.Status))
	b = append(b, `,"items":`...)
	if o.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, it := range o.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"sku":`...)
			b = appendString(b, it.SKU)
			b = append(b, `,"quantity":`...)
			b = strconv.AppendInt(b, it.Quantity, 10)
			b = append(b, `,"price_cents":`...)
			b = strconv.AppendInt(b, it.PriceCents, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"total_cents":`...)
	b = strconv.AppendInt(b, o.TotalCents, 10)
	b = append(b, `,"created_at":"`...)
	at := len(b)
	b = o.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	ok := strictRFC3339(b[at:])
	if o.ExpiresAt != nil {
		b = append(b, `","expires_at":"`...)
		at = len(b)
		b = o.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
		ok = ok && strictRFC3339(b[at:])
	}
	if !ok {
		// json.Marshal fails on such a time; keep its answer.
		body, _ := json.Marshal(o)
		return body
	}
	return append(b, `"}`...)
}

// strictRFC3339 reports whether t, a time formatted as time.RFC3339Nano, is
// one that time.Time.MarshalJSON accepts: a 4-digit year and a zone offset
// under 24 hours.
func strictRFC3339(t []byte) bool {
	if len(t) < len("2006-01-02T15:04:05Z") || t[4] != '-' {
		return false
	}
	if t[len(t)-1] == 'Z' {
		return true
	}
	c := t[len(t)-len("Z07:00")]
	h := 10*int(t[len(t)-5]-'0') + int(t[len(t)-4]-'0')
	return !('0' <= c && c <= '9') && h < 24
}

// encodeError returns the API's error body, as json.Marshal of errorBody
// writes it.
func encodeError(code, message string) []byte {
	return append(appendErrorDetail(code, message, 0), "}}"...)
}

// encodeErrorStartsAt returns the API's error body with its starts_at, as
// json.Marshal of errorBody writes it.
func encodeErrorStartsAt(code, message string, startsAt time.Time) []byte {
	b := appendErrorDetail(code, message, len(`,"starts_at":""`)+len(time.RFC3339Nano))
	b = append(b, `,"starts_at":"`...)
	b = startsAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}}`...)
}

// appendErrorDetail returns the error body up to the end of its message,
// with room for extra more bytes.
func appendErrorDetail(code, message string, extra int) []byte {
	b := make([]byte, 0, len(`{"error":{"code":,"message":}}`)+len(code)+len(message)+8+extra)
	b = append(b, `{"error":{"code":`...)
	b = appendString(b, code)
	b = append(b, `,"message":`...)
	return appendString(b, message)
}

// encodeProduct returns the product page's JSON at now, as json.Marshal of
// newProductView writes it, and the length of its content before
// server_time (what the entity tag covers).
func encodeProduct(p *flashorder.Product, now time.Time) (body []byte, etagEnd int) {
	b := make([]byte, 0, 256+len(p.SKU)+len(p.Name))
	b = append(b, `{"sku":`...)
	b = appendString(b, p.SKU)
	b = append(b, `,"name":`...)
	b = appendString(b, p.Name)
	b = append(b, `,"price_cents":`...)
	b = strconv.AppendInt(b, p.PriceCents, 10)
	b = append(b, `,"stock":`...)
	b = strconv.AppendInt(b, p.Stock, 10)
	b = append(b, `,"sold":`...)
	b = strconv.AppendInt(b, p.Sold, 10)
	b = append(b, `,"per_user_limit":`...)
	b = strconv.AppendInt(b, p.PerUserLimit, 10)
	if p.StartsAt != nil {
		b = append(b, `,"starts_at":"`...)
		b = p.StartsAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if p.EndsAt != nil {
		b = append(b, `,"ends_at":"`...)
		b = p.EndsAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if p.PaymentWindow > 0 {
		b = append(b, `,"payment_window":`...)
		b = appendString(b, p.PaymentWindow.String())
	}
	if p.Queued() {
		b = append(b, `,"admission":`...)
		b = appendString(b, p.Admission)
		if p.Sale != "" {
			b = append(b, `,"sale":`...)
			b = appendString(b, p.Sale)
		}
		b = append(b, `,"admission_factor":`...)
		b = strconv.AppendFloat(b, p.Factor(), 'f', -1, 64) // encoding/json's form in 1..100
	}
	b = append(b, `,"status":`...)
	b = appendString(b, p.Status(now))
	etagEnd = len(b)
	b = append(b, `,"server_time":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...), etagEnd
}

// parseJoinBody parses a join's body, {"user_id":"…"} or {}, by hand in the
// plain shape orderParser takes, and reports whether it did; userID is
// unchanged when it did not (the caller decodes the body with
// encoding/json).
func parseJoinBody(b []byte, userID *string) bool {
	p := orderParser{b: b}
	var user bool
	var s span
	ok := p.object(func(k []byte) bool {
		if string(k) != "user_id" || user {
			return false
		}
		user = true
		var ok bool
		s, ok = p.str()
		return ok
	})
	if p.ws(); !ok || p.i != len(b) {
		return false
	}
	*userID = string(b[s.start:s.end])
	return true
}

// encodePlace returns json.Marshal(newPlaceView(p, now)) and a newline,
// without reflection.
func encodePlace(p queue.Place, now time.Time) []byte {
	b := make([]byte, 0, 192+len(p.ID)+len(p.Token))
	b = append(b, `{"ticket":`...)
	b = appendString(b, p.ID)
	b = append(b, `,"queue":`...)
	b = appendString(b, p.QueueID)
	b = append(b, `,"status":`...)
	b = appendString(b, string(p.Status))
	if p.Position != 0 {
		b = append(b, `,"position":`...)
		b = strconv.AppendInt(b, int64(p.Position), 10)
	}
	if p.PreQueue {
		b = append(b, `,"pre_queue":true`...)
	}
	if p.StartsAt != nil {
		b = append(b, `,"starts_at":"`...)
		b = p.StartsAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if p.EstimatedWait >= 0 {
		b = append(b, `,"estimated_wait_ms":`...)
		b = strconv.AppendInt(b, p.EstimatedWait.Milliseconds(), 10)
	}
	if ms := p.PollAfter.Milliseconds(); ms != 0 {
		b = append(b, `,"poll_after_ms":`...)
		b = strconv.AppendInt(b, ms, 10)
	}
	if p.Token != "" {
		b = append(b, `,"admission_token":`...)
		b = appendString(b, p.Token)
		b = append(b, `,"admission_expires_at":"`...)
		b = p.Admission.ExpiresAt.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
		if n := p.Admission.Number; n != 0 {
			b = append(b, `,"admission_number":`...)
			b = strconv.AppendInt(b, n, 10)
		}
	}
	b = append(b, `,"server_time":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, "\"}\n"...)
}
