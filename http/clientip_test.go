package http_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	orderhttp "github.com/flashorder/flashorder/http"
)

func mustProxies(t testing.TB, s string) orderhttp.TrustedProxies {
	t.Helper()
	tp, err := orderhttp.ParseTrustedProxies(s)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// request returns a GET from peer (a RemoteAddr) with one X-Forwarded-For
// line per xff item.
func request(peer string, xff ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/v1/products/hot-1/queue", nil)
	r.RemoteAddr = peer
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

func TestParseTrustedProxies(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{"", ""},
		{" , ", ""},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{" 192.0.2.7 , fd00::/8,::1", "192.0.2.7/32,fd00::/8,::1/128"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
	} {
		tp, err := orderhttp.ParseTrustedProxies(c.in)
		if err != nil || tp.String() != c.want {
			t.Errorf("ParseTrustedProxies(%q) = %q, %v; want %q", c.in, tp.String(), err, c.want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "nginx", "10.0.0.0/8;", "10.0.0", "fe80::1%eth0", "10.0.0.0/8,,x", "[::1]"} {
		if _, err := orderhttp.ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q): no error", bad)
		}
	}
}

func TestClientIP(t *testing.T) {
	tp := mustProxies(t, "10.0.0.0/8, 192.0.2.7, fd00::/8")
	for _, c := range []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{"no header", "203.0.113.9:5000", nil, "203.0.113.9"},
		{"untrusted peer's header is ignored", "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"untrusted peer claiming a trusted proxy", "203.0.113.9:5000", []string{"198.51.100.1, 10.0.0.1"}, "203.0.113.9"},
		{"trusted peer", "10.0.0.2:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"trusted peer by single IP", "192.0.2.7:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"trusted peer, no header", "10.0.0.2:4000", nil, "10.0.0.2"},
		{"trusted peer, empty header", "10.0.0.2:4000", []string{""}, "10.0.0.2"},
		{"left-most entries are the client's invention", "10.0.0.2:4000", []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, "198.51.100.1"},
		{"chain of proxies", "10.0.0.2:4000", []string{"1.1.1.1, 198.51.100.1, 192.0.2.7, 10.9.9.9"}, "198.51.100.1"},
		{"chain over several lines", "10.0.0.2:4000", []string{"1.1.1.1, 198.51.100.1", "192.0.2.7", "10.9.9.9"}, "198.51.100.1"},
		{"every entry trusted: the farthest", "10.0.0.2:4000", []string{"10.3.3.3, 10.4.4.4"}, "10.3.3.3"},
		{"spaces and tabs", "10.0.0.2:4000", []string{" 1.1.1.1 ,\t198.51.100.1\t"}, "198.51.100.1"},
		{"entry with a port", "10.0.0.2:4000", []string{"198.51.100.1:6000"}, "198.51.100.1"},
		{"IPv6 peer", "[2001:db8::1]:443", []string{"198.51.100.1"}, "2001:db8::1"},
		{"IPv6 trusted peer", "[fd00::5]:443", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv6 entry in brackets", "[fd00::5]:443", []string{"[2001:db8::7]"}, "2001:db8::7"},
		{"IPv6 entry in brackets with a port", "[fd00::5]:443", []string{"[2001:db8::7]:8443"}, "2001:db8::7"},
		{"IPv6 chain", "[fd00::5]:443", []string{"2001:db8::7, fd00::9, 10.1.1.1"}, "2001:db8::7"},
		{"IPv6 entry with a zone", "10.0.0.2:4000", []string{"fe80::1%eth0"}, "fe80::1"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.2]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped entry", "10.0.0.2:4000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped trusted entry", "10.0.0.2:4000", []string{"198.51.100.1, ::ffff:10.1.1.1"}, "198.51.100.1"},
		{"peer without a port", "10.0.0.2", []string{"198.51.100.1"}, "198.51.100.1"},
		// Malformed: the header cannot be trusted, the peer is the client.
		{"garbage", "10.0.0.2:4000", []string{"nonsense"}, "10.0.0.2"},
		{"unknown", "10.0.0.2:4000", []string{"unknown"}, "10.0.0.2"},
		{"empty entry", "10.0.0.2:4000", []string{"198.51.100.1,,10.1.1.1"}, "10.0.0.2"},
		{"trailing comma", "10.0.0.2:4000", []string{"198.51.100.1,"}, "10.0.0.2"},
		{"IPv4 in brackets", "10.0.0.2:4000", []string{"[198.51.100.1]"}, "10.0.0.2"},
		{"bad octet", "10.0.0.2:4000", []string{"198.51.100.256"}, "10.0.0.2"},
		{"leading zeros", "10.0.0.2:4000", []string{"198.051.100.1"}, "10.0.0.2"},
		{"garbage behind trusted entries", "10.0.0.2:4000", []string{"198.51.100.1, x, 10.1.1.1"}, "10.0.0.2"},
		{"an obfuscated Forwarded-style entry", "10.0.0.2:4000", []string{"for=198.51.100.1"}, "10.0.0.2"},
		// Garbage to the left of the client is the client's own business.
		{"garbage left of the client", "10.0.0.2:4000", []string{"x, 198.51.100.1"}, "198.51.100.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := tp.ClientIP(request(c.peer, c.xff...))
			if got != netip.MustParseAddr(c.want) {
				t.Errorf("peer %s, X-Forwarded-For %q: client %v, want %s", c.peer, c.xff, got, c.want)
			}
		})
	}
}

func TestClientIPNoTrustedProxies(t *testing.T) {
	var tp orderhttp.TrustedProxies // the zero value trusts nobody
	if got := tp.ClientIP(request("127.0.0.1:80", "198.51.100.1")); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("client %v, want the peer", got)
	}
	if got := tp.ClientIP(request("@")); got.IsValid() {
		t.Errorf("a Unix socket peer: client %v, want the zero Addr", got)
	}
}

// TestClientIPAllocs keeps ClientIP free of allocations on the usual forms.
func TestClientIPAllocs(t *testing.T) {
	tp := mustProxies(t, "10.0.0.0/8, fd00::/8")
	for _, r := range []*http.Request{
		request("203.0.113.9:5000", "198.51.100.1"),
		request("10.0.0.2:4000", "1.1.1.1, 198.51.100.1, 10.9.9.9"),
		request("[fd00::5]:443", "2001:db8::7"),
	} {
		if n := testing.AllocsPerRun(100, func() { tp.ClientIP(r) }); n != 0 {
			t.Errorf("ClientIP(%s, %q): %v allocations, want 0", r.RemoteAddr, r.Header["X-Forwarded-For"], n)
		}
	}
}

func BenchmarkClientIP(b *testing.B) {
	tp := mustProxies(b, "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fd00::/8")
	for _, c := range []struct {
		name string
		r    *http.Request
	}{
		{"untrusted", request("203.0.113.9:5000", "198.51.100.1")},
		{"one-proxy", request("10.0.0.2:4000", "198.51.100.1")},
		{"three-proxies", request("10.0.0.2:4000", "1.1.1.1, 198.51.100.1, 172.16.0.9, 192.168.1.1")},
		{"ipv6", request("[fd00::5]:443", "2001:db8::7")},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tp.ClientIP(c.r)
			}
		})
	}
}
