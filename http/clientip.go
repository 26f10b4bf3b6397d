package http

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// TrustedProxies is the set of proxies (orderd's --trusted-proxies) whose
// X-Forwarded-For a server believes. The zero value trusts no proxy: every
// request's client is its TCP peer. It is parsed once and only read after,
// so one value serves every request concurrently.
type TrustedProxies struct {
	prefixes []netip.Prefix
}

// ParseTrustedProxies parses a comma-separated list of CIDRs ("10.0.0.0/8",
// "fd00::/8") and single IPs ("192.0.2.7", "::1"); spaces around the items
// are ignored and "" trusts no proxy. An IPv4-mapped IPv6 item
// ("::ffff:10.0.0.0/104") means the IPv4 one.
func ParseTrustedProxies(s string) (TrustedProxies, error) {
	var tp TrustedProxies
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := parseProxy(item)
		if err != nil {
			return TrustedProxies{}, fmt.Errorf("http: trusted proxies: %q is not a CIDR or an IP address", item)
		}
		tp.prefixes = append(tp.prefixes, p)
	}
	return tp, nil
}

func parseProxy(item string) (netip.Prefix, error) {
	if strings.Contains(item, "/") {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(item)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zone %q", a.Zone())
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Len returns how many CIDRs the set holds; 0 means no proxy is trusted.
func (tp TrustedProxies) Len() int { return len(tp.prefixes) }

// String returns the set as ParseTrustedProxies reads it, each IP as a CIDR.
func (tp TrustedProxies) String() string {
	var b strings.Builder
	for i, p := range tp.prefixes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Trusted reports whether addr is one of the trusted proxies.
func (tp TrustedProxies) Trusted(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range tp.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ClientIP returns the address of the client that sent r: its TCP peer
// (r.RemoteAddr), unless the peer is a trusted proxy. Then it is the
// right-most X-Forwarded-For entry that is not a trusted proxy itself: each
// proxy appends the address it received the request from, so the entries to
// the right of the first untrusted one were written by trusted proxies and
// everything to its left may be the client's invention. When every entry is
// a trusted proxy, it is the left-most one (the farthest hop known). Several
// X-Forwarded-For header lines count as one list, in order.
//
// An entry that is not an IP address (with or without a port, IPv6 in
// brackets or not) met before the client's makes the whole header
// untrustworthy: the answer is then the peer, as it is when the header is
// missing. A peer that is not an IP address (a Unix socket) gives the zero
// netip.Addr, which IsValid reports as invalid. The answer never has a zone
// and an IPv4-mapped IPv6 address is given as IPv4.
//
// ClientIP does not allocate.
func (tp TrustedProxies) ClientIP(r *http.Request) netip.Addr {
	peer := parseHostPort(r.RemoteAddr)
	if !peer.IsValid() || len(tp.prefixes) == 0 || !tp.Trusted(peer) {
		return peer
	}
	lines := r.Header["X-Forwarded-For"]
	var farthest netip.Addr
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		if strings.TrimSpace(rest) == "" {
			continue // an empty line holds no entry
		}
		for done := false; !done; {
			var item string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				item, rest = rest[j+1:], rest[:j]
			} else {
				item, done = rest, true
			}
			a := parseHostPort(strings.TrimSpace(item))
			if !a.IsValid() {
				return peer
			}
			if !tp.Trusted(a) {
				return a
			}
			farthest = a
		}
	}
	if farthest.IsValid() {
		return farthest
	}
	return peer
}

// parseHostPort parses "ip", "ip:port", "[ipv6]" or "[ipv6]:port"; anything
// else is the zero Addr. The zone is dropped and IPv4-mapped IPv6 unmapped.
func parseHostPort(s string) netip.Addr {
	// The form is told apart before parsing: a failed parse allocates its
	// error, and the usual forms must not.
	var a netip.Addr
	var err error
	switch colons := strings.Count(s, ":"); {
	case s == "":
		return netip.Addr{}
	case s[0] == '[' && s[len(s)-1] == ']':
		a, err = netip.ParseAddr(s[1 : len(s)-1])
		if err == nil && !a.Is6() {
			return netip.Addr{}
		}
	case s[0] == '[' || colons == 1:
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	default:
		a, err = netip.ParseAddr(s)
	}
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}
