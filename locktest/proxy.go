package locktest

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of one server, so that a test can cut a
// client off as a crash or a network partition would, without touching the
// client: Cut closes every connection and refuses new ones until Resume;
// Partition keeps every connection open but carries no byte in either
// direction until Heal, as a network that drops packets does.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	// healed is open while the proxy is partitioned; Heal closes it.
	healed chan struct{}
	wg     sync.WaitGroup
}

// NewProxy starts a proxy to target on a free loopback port; it stops when the
// test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("locktest: proxy listen: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr returns the proxy's address, to give to the client instead of the
// server's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every proxied connection and refuses new ones: to the server the
// client is dead, to the client the server is unreachable.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Partition stops carrying bytes, on open connections and on new ones
// (which are accepted but reach the server only after Heal): neither end
// sees a close, what they send waits in the proxy. It lasts until Heal.
func (p *Proxy) Partition() {
	p.mu.Lock()
	if p.healed == nil {
		p.healed = make(chan struct{})
	}
	p.mu.Unlock()
}

// Heal ends a Partition: what waited is delivered, in order, and so is a
// close that happened meanwhile.
func (p *Proxy) Heal() {
	p.mu.Lock()
	if p.healed != nil {
		close(p.healed)
		p.healed = nil
	}
	p.mu.Unlock()
}

// passable waits until the proxy is not partitioned.
func (p *Proxy) passable() {
	p.mu.Lock()
	ch := p.healed
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// Resume accepts connections again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.pipe(c)
	}
}

func (p *Proxy) pipe(c net.Conn) {
	defer p.wg.Done()
	defer p.forget(c)
	p.passable()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		s.Close()
		return
	}
	p.conns[s] = struct{}{}
	p.mu.Unlock()
	defer p.forget(s)
	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		// A copy error is how a cut looks; either way both ends close.
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			p.passable()
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go copyHalf(s, c)
	go copyHalf(c, s)
	<-done
	<-done
}

func (p *Proxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.Heal()
	p.Cut()
	p.wg.Wait()
}
