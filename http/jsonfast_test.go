package http

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/queue"
)

// stdDecode is the reference: how encoding/json decodes an order body.
func stdDecode(b []byte) (flashorder.OrderRequest, error) {
	var req flashorder.OrderRequest
	err := decodeStrict(bytes.NewReader(b), &req)
	return req, err
}

// checkParse fails when the fast parser takes a body that encoding/json
// refuses or decodes to another value, or refuses a plain body.
func checkParse(t *testing.T, body []byte, plain bool) {
	t.Helper()
	var fast flashorder.OrderRequest
	ok := parseOrderRequest(body, &fast)
	want, err := stdDecode(body)
	switch {
	case ok && err != nil:
		t.Fatalf("fast parser took %q, encoding/json refuses it: %v", body, err)
	case ok && !reflect.DeepEqual(fast, want):
		t.Fatalf("%q: fast parser got %#v, encoding/json %#v", body, fast, want)
	case !ok && plain:
		t.Fatalf("fast parser refused the plain body %q", body)
	case !ok && !reflect.DeepEqual(fast, flashorder.OrderRequest{}):
		t.Fatalf("fast parser refused %q but changed the request: %#v", body, fast)
	}
}

var parseSeeds = []string{
	`{"user_id":"u-42","items":[{"sku":"hot-1","quantity":1}]}`,
	` { "user_id" : "u:1" , "items" : [ { "quantity" : 20 , "sku" : "a.b_c" } , {"sku":"b","quantity":0} ] } ` + "\n",
	`{"items":[],"user_id":""}`, `{}`, `{"items":[{}]}`, `{"user_id":"u"}`, `{"items":[{"sku":"x"}]}`,
	`{"user_id":"u","items":null}`, `null`, `[]`, ``, `{"user_id":"u","items":[{"sku":"a","quantity":1.5}]}`,
	`{"user_id":"u","items":[{"sku":"a","quantity":1e3}]}`, `{"user_id":"u","items":[{"sku":"a","quantity":-1}]}`,
	`{"user_id":"u","items":[{"sku":"a","quantity":01}]}`, `{"user_id":"u","items":[{"sku":"a","quantity":"1"}]}`,
	`{"user_id":"u","items":[{"sku":"a","quantity":999999999999999999}]}`,
	`{"user_id":"u","items":[{"sku":"a","quantity":9999999999999999999}]}`,
	`{"USER_ID":"u","items":[]}`, `{"user_id":"u","user_id":"v"}`, `{"user_id":"u\"v"}`, `{"user_id":"u\u00e9"}`,
	"{\"user_id\":\"u\xc3\xa9\"}", "{\"user_id\":\"u\x01\"}", `{"user_id":"u"} {}`, `{"user_id":"u"}x`,
	`{"user_id":"u",}`, `{"user_id":"u","items":[{"sku":"a","quantity":1},]}`, `{"user_id":"u","price":1}`,
	`{"user_id":"u","items":[{"sku":"a","sku":"b"}]}`, `{"user_id":"u","items":[{"sku":"a","quantity":1}]`,
	`{"user_id":"u","items":[{"sku":"a","quantity":1}` + strings.Repeat(`,{"sku":"a","quantity":1}`, 20) + `]}`,
	`{"user_id":"u","items":[{"sku":"a","quantity":1}` + strings.Repeat(`,{"sku":"a","quantity":1}`, 19) + `]}`,
	"\ufeff{}", `{"user_id":1}`, `{"user_id":"u","items":{}}`, `{"user_id":"u","items":[1]}`, `{"user_id":"u","items":[null]}`,
	`{"user_id":"u","items":[{"sku":"a","quantity":1}]}` + " \t\r\n",
}

// TestParseOrderRequest checks the fast parser against encoding/json on the
// seeds and on many variations of the plain shape.
func TestParseOrderRequest(t *testing.T) {
	for _, s := range parseSeeds {
		checkParse(t, []byte(s), false)
	}
	checkParse(t, []byte(parseSeeds[0]), true)
	checkParse(t, []byte(parseSeeds[1]), true)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		body := []byte(randomBody(rng))
		checkParse(t, body, false)
		// and with one byte changed or cut
		if len(body) > 0 {
			mut := bytes.Clone(body)
			const alphabet = "{}[],:\" 0123456789.-eE\\nulx\x00\xff"
			mut[rng.IntN(len(mut))] = alphabet[rng.IntN(len(alphabet))]
			checkParse(t, mut, false)
			checkParse(t, body[:rng.IntN(len(body))], false)
		}
	}
}

// randomBody returns an order body near the plain shape: random spacing,
// keys, values and item counts.
func randomBody(rng *rand.Rand) string {
	ws := func() string { return []string{"", "", " ", "\n\t", "\r "}[rng.IntN(5)] }
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	str := func() string { return pick(`"u-1"`, `"a.b_c:d"`, `""`, `"x y"`, `"\u0041"`, `1`, `null`, `"<&>"`) }
	num := func() string {
		return pick("1", "0", "1000", "123456789012345678", "-1", "1.0", "2e1", `"1"`, "null", "00")
	}
	var b strings.Builder
	b.WriteString(ws() + "{" + ws())
	fields := rng.IntN(4)
	for i := range fields {
		if i > 0 {
			b.WriteString("," + ws())
		}
		switch rng.IntN(5) {
		case 0, 1:
			b.WriteString(`"user_id"` + ws() + ":" + ws() + str())
		case 2, 3:
			b.WriteString(pick(`"items"`, `"items"`, `"Items"`) + ws() + ":" + ws() + "[" + ws())
			for j := range rng.IntN(23) {
				if j > 0 {
					b.WriteString("," + ws())
				}
				b.WriteString("{" + ws() + pick(`"sku"`, `"SKU"`, `"qty"`) + ":" + ws() + str() + "," + ws() + `"quantity"` + ws() + ":" + ws() + num() + ws() + "}")
			}
			b.WriteString(ws() + "]")
		default:
			b.WriteString(pick(`"other"`, `"user_id"`) + ":" + ws() + str())
		}
		b.WriteString(ws())
	}
	b.WriteString("}" + ws())
	return b.String()
}

// FuzzParseOrderRequest: go test -fuzz FuzzParseOrderRequest ./http/
func FuzzParseOrderRequest(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkParse(t, body, false) })
}

// TestEncodeOrder checks that encodeOrder writes what json.Marshal writes,
// odd strings, nil items, expires_at set and nil, and times json.Marshal
// refuses (in created_at or expires_at) included.
func TestEncodeOrder(t *testing.T) {
	odd := []string{"", "plain-1", `q"uote`, `back\slash`, "<&>", "é", "\x00\x1f", "\xff", "\u2028", "tab\t"}
	zones := []*time.Location{time.UTC, time.FixedZone("", 5*3600+30*60), time.FixedZone("", -8*3600), time.FixedZone("", 24*3600), time.FixedZone("", 30)}
	times := []time.Time{{}, time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC), time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		o := &flashorder.Order{ID: odd[rng.IntN(len(odd))], UserID: odd[rng.IntN(len(odd))], Status: flashorder.Status(odd[rng.IntN(len(odd))]),
			TotalCents: rng.Int64() - rng.Int64(), CreatedAt: times[rng.IntN(len(times))].In(zones[rng.IntN(len(zones))]), IdempotencyKey: "k", Fingerprint: "f"}
		if i%2 == 0 {
			o.ID, o.UserID, o.Status = "01J8ZQ4V6Y3K2M5N7P9R1T3W5X", "u-42", flashorder.StatusCreated
		}
		if n := rng.IntN(4); n > 0 {
			o.Items = make([]flashorder.OrderItem, n-1)
			for j := range o.Items {
				o.Items[j] = flashorder.OrderItem{SKU: odd[rng.IntN(len(odd))], Quantity: rng.Int64N(2000) - 5, PriceCents: rng.Int64()}
			}
		}
		switch rng.IntN(3) {
		case 0: // no deadline of its own: expires_at left out
		case 1: // the usual: created_at plus a window, both UTC microseconds
			at := o.CreatedAt.Add(time.Duration(10+rng.IntN(86391)) * time.Second)
			o.ExpiresAt = &at
		default:
			at := times[rng.IntN(len(times))].In(zones[rng.IntN(len(zones))])
			o.ExpiresAt = &at
		}
		want, _ := json.Marshal(o)
		if got := encodeOrder(o); !bytes.Equal(got, want) {
			t.Fatalf("order %#v:\n got %s\nwant %s", o, got, want)
		}
	}
}

// TestEncodeError checks encodeError against json.Marshal of errorBody.
func TestEncodeError(t *testing.T) {
	for _, msg := range []string{"", "sold out", `unknown field "x"`, `back\slash`, "<&>", "é\u2028\xff", "line\nbreak"} {
		want, _ := json.Marshal(errorBody{Error: errorDetail{Code: flashorder.ESOLDOUT, Message: msg}})
		if got := encodeError(flashorder.ESOLDOUT, msg); !bytes.Equal(got, want) {
			t.Errorf("message %q:\n got %s\nwant %s", msg, got, want)
		}
	}
}

// TestEncodeErrorStartsAt checks encodeErrorStartsAt against json.Marshal
// of errorBody with a start time, at every precision a start can have.
func TestEncodeErrorStartsAt(t *testing.T) {
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, d := range []time.Duration{0, time.Microsecond, 120 * time.Millisecond, 999999 * time.Microsecond, 36*time.Hour + 7} {
		at := base.Add(d)
		want, _ := json.Marshal(errorBody{Error: errorDetail{Code: flashorder.ENOTSTARTED, Message: "wait <&>", StartsAt: &at}})
		if got := encodeErrorStartsAt(flashorder.ENOTSTARTED, "wait <&>", at); !bytes.Equal(got, want) {
			t.Errorf("starts_at %v:\n got %s\nwant %s", at, got, want)
		}
	}
}

// TestEncodeProduct checks encodeProduct against json.Marshal of
// newProductView for random products, windows and clocks, and that the
// entity tag's span ends right before server_time.
func TestEncodeProduct(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	names := []string{"Phone", `quote " and \ slash`, "<&>", "é\u2028", "x"}
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 3000 {
		p := &flashorder.Product{SKU: fmt.Sprintf("sku-%d", i), Name: names[rng.IntN(len(names))],
			PriceCents: rng.Int64N(flashorder.MaxPriceCents), Stock: rng.Int64N(3), Sold: rng.Int64N(1e12), PerUserLimit: rng.Int64N(4)}
		if rng.IntN(2) == 0 {
			at := base.Add(time.Duration(rng.Int64N(int64(time.Hour))) / time.Microsecond * time.Microsecond)
			p.StartsAt = &at
		}
		if rng.IntN(2) == 0 {
			at := base.Add(time.Hour + time.Duration(rng.Int64N(int64(time.Hour))))
			p.EndsAt = &at
		}
		if rng.IntN(2) == 0 {
			p.PaymentWindow = time.Duration(10+rng.IntN(86000)) * time.Second
		}
		if rng.IntN(2) == 0 {
			p.Admission = flashorder.AdmissionQueue
			if rng.IntN(2) == 0 {
				p.Sale = names[rng.IntN(len(names))] // any text: the encoder must escape what it is given
			}
			switch rng.IntN(3) {
			case 0:
				p.AdmissionFactor = 1 + rng.Float64()*99
			case 1:
				p.AdmissionFactor = float64(1 + rng.IntN(100))
			}
		}
		now := base.Add(time.Duration(rng.Int64N(int64(3 * time.Hour))))
		want, err := json.Marshal(newProductView(p, now))
		if err != nil {
			t.Fatal(err)
		}
		got, etagEnd := encodeProduct(p, now)
		if !bytes.Equal(got, want) {
			t.Fatalf("product %+v at %v:\n got %s\nwant %s", p, now, got, want)
		}
		if !bytes.HasPrefix(got[etagEnd:], []byte(`,"server_time":`)) {
			t.Fatalf("the entity tag's span ends at %q", got[etagEnd:])
		}
	}
}

// TestAppendString checks appendString against json.Marshal on random
// strings over an alphabet of the characters it treats apart.
func TestAppendString(t *testing.T) {
	alphabet := []string{"a", "Z", "0", " ", `"`, `\`, "<", ">", "&", "é", "\x00", "\x1f", "\x7f", "\xff", "\u2028", "-"}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		var sb strings.Builder
		for range rng.IntN(12) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s := sb.String()
		want, _ := json.Marshal(s)
		if got := appendString([]byte("x"), s); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("%q:\n got %s\nwant %s", s, got, want)
		}
	}
}

// checkJoin fails when the join body's fast parser takes a body that
// encoding/json refuses or decodes to another user id, or refuses a plain
// one, or changes the user id when it refuses.
func checkJoin(t *testing.T, body []byte, plain bool) {
	t.Helper()
	const untouched = "untouched"
	fast := untouched
	ok := parseJoinBody(body, &fast)
	var want joinBody
	err := decodeStrict(bytes.NewReader(body), &want)
	switch {
	case ok && err != nil:
		t.Fatalf("fast join parser took %q, encoding/json refuses it: %v", body, err)
	case ok && fast != want.UserID:
		t.Fatalf("%q: fast join parser got %q, encoding/json %q", body, fast, want.UserID)
	case !ok && plain:
		t.Fatalf("fast join parser refused the plain body %q", body)
	case !ok && fast != untouched:
		t.Fatalf("fast join parser refused %q but set the user id %q", body, fast)
	}
}

var joinSeeds = []string{
	`{"user_id":"u-42"}`, ` { "user_id" : "a.b_c:d" } ` + "\n", `{}`, `{"user_id":""}`, `{"user_id":null}`, `null`, ``,
	`{"user_id":"u","user_id":"v"}`, `{"USER_ID":"u"}`, `{"user_id":"u\"v"}`, `{"user_id":"\u0041"}`, "{\"user_id\":\"u\xc3\xa9\"}",
	`{"user_id":1}`, `{"user_id":"u"} {}`, `{"user_id":"u",}`, `{"user_id":"u","items":[]}`, `[]`, "\ufeff{}",
}

// TestParseJoinBody checks the join body's fast parser against
// encoding/json on the seeds and on random bodies near the plain shape,
// each also with a byte changed and cut short.
func TestParseJoinBody(t *testing.T) {
	for _, s := range joinSeeds {
		checkJoin(t, []byte(s), false)
	}
	checkJoin(t, []byte(joinSeeds[0]), true)
	checkJoin(t, []byte(joinSeeds[1]), true)
	rng := rand.New(rand.NewPCG(9, 10))
	ws := func() string { return []string{"", "", " ", "\n\t", "\r "}[rng.IntN(5)] }
	for range 20000 {
		var b strings.Builder
		b.WriteString(ws() + "{" + ws())
		for i := range rng.IntN(3) {
			if i > 0 {
				b.WriteString("," + ws())
			}
			key := []string{`"user_id"`, `"user_id"`, `"User_id"`, `"other"`}[rng.IntN(4)]
			val := []string{`"u-1"`, `"a.b_c:d"`, `""`, `"x y"`, `"\u0041"`, `1`, `null`, `"<&>"`, `"é"`}[rng.IntN(9)]
			b.WriteString(key + ws() + ":" + ws() + val + ws())
		}
		b.WriteString("}" + ws())
		body := []byte(b.String())
		checkJoin(t, body, false)
		mut := bytes.Clone(body)
		const alphabet = "{}[],:\" 0123456789.-eE\\nulx\x00\xff"
		mut[rng.IntN(len(mut))] = alphabet[rng.IntN(len(alphabet))]
		checkJoin(t, mut, false)
		checkJoin(t, body[:rng.IntN(len(body))], false)
	}
}

// FuzzParseJoinBody: go test -fuzz FuzzParseJoinBody ./http/
func FuzzParseJoinBody(f *testing.F) {
	for _, s := range joinSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkJoin(t, body, false) })
}

// TestEncodePlace checks encodePlace against json.Marshal of newPlaceView
// for random tickets of every status.
func TestEncodePlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ids := []string{"sku:a~0123456789abcdef0123456789abcdef", "sale:drop-7~ffffffffffffffffffffffffffffffff", `odd "<&>" é`}
	statuses := []queue.Status{queue.StatusWaiting, queue.StatusAdmitted, queue.StatusSoldOut, queue.StatusEnded, queue.StatusExpired}
	for range 5000 {
		p := queue.Place{Ticket: queue.Ticket{ID: ids[rng.IntN(len(ids))], QueueID: ids[rng.IntN(len(ids))], UserID: "u",
			Status: statuses[rng.IntN(len(statuses))], Position: rng.IntN(3) * rng.IntN(100000), PreQueue: rng.IntN(2) == 0},
			EstimatedWait: time.Duration(rng.Int64N(int64(time.Hour))) - time.Duration(rng.IntN(2))*time.Hour,
			PollAfter:     time.Duration(rng.IntN(3)) * time.Duration(rng.Int64N(int64(5*time.Second)))}
		if rng.IntN(2) == 0 {
			at := base.Add(time.Duration(rng.Int64N(int64(time.Hour))))
			p.StartsAt = &at
		}
		if rng.IntN(2) == 0 {
			p.Token = ids[rng.IntN(len(ids))] + ".sig"
			p.Admission = &queue.Admission{ExpiresAt: base.Add(time.Duration(rng.Int64N(int64(time.Hour)))), Number: rng.Int64N(3) * rng.Int64N(1<<40)}
		}
		now := base.Add(time.Duration(rng.Int64N(int64(3 * time.Hour))))
		want, err := json.Marshal(newPlaceView(p, now))
		if err != nil {
			t.Fatal(err)
		}
		if got := encodePlace(p, now); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("place %+v at %v:\n got %s\nwant %s", p, now, got, want)
		}
	}
}
