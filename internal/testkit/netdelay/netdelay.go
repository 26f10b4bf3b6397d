// Package netdelay puts a set network delay between a client and a TCP
// server, in process, to measure orderd as if its database were across a
// network: one zone's 0.2-1 ms per direction, or more. The kernel's netem is
// not needed (and not available everywhere): the proxy is Toxiproxy's, used as
// a library, with one toxic per direction.
//
// Toxiproxy's own latency toxic counts whole milliseconds; the delay toxic
// here takes any time.Duration, so that 0.5 ms can be measured. It is a delay
// line: each chunk of bytes leaves the proxy delay after it arrived, in the
// order it arrived, and chunks that arrive while earlier ones wait are queued
// (up to BufferChunks), not serialised behind them, so the delay adds latency
// without capping throughput.
package netdelay

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
)

// BufferChunks is how many chunks of bytes one direction of one connection
// holds while they wait out the delay; a sender that gets further ahead
// waits, as it would for a full TCP window.
const BufferChunks = 4096

// toxicType is the name the delay toxic is registered under in Toxiproxy's
// registry of toxic types.
const toxicType = "flashorder_delay"

var registerOnce sync.Once

// Proxy is a running delay proxy.
type Proxy struct {
	server *toxiproxy.ApiServer
	proxy  *toxiproxy.Proxy
}

// Start listens on listen (host:port; port 0 picks a free one) and forwards
// every connection to upstream, delaying the bytes of each direction by
// delay: a round trip through the proxy costs at least 2*delay more than
// without it. A delay of 0 forwards without a toxic. Close stops it.
func Start(listen, upstream string, delay time.Duration) (*Proxy, error) {
	if delay < 0 {
		return nil, fmt.Errorf("netdelay: negative delay %v", delay)
	}
	registerOnce.Do(func() { toxics.Register(toxicType, new(delayToxic)) })
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, "netdelay", listen, upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("netdelay: listen on %s: %w", listen, err)
	}
	if delay > 0 {
		for _, stream := range []string{"upstream", "downstream"} {
			spec, err := json.Marshal(map[string]any{
				"name": "delay_" + stream, "type": toxicType, "stream": stream, "toxicity": 1.0,
				"attributes": map[string]any{"delay_ns": delay.Nanoseconds()},
			})
			if err != nil {
				p.Stop()
				return nil, fmt.Errorf("netdelay: %w", err)
			}
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(string(spec))); err != nil {
				p.Stop()
				return nil, fmt.Errorf("netdelay: add the %s delay: %w", stream, err)
			}
		}
	}
	return &Proxy{server: server, proxy: p}, nil
}

// Addr returns the address the proxy listens on, to give to the client
// instead of upstream's.
func (p *Proxy) Addr() string { return p.proxy.Listen }

// Close stops listening and closes every proxied connection.
func (p *Proxy) Close() { p.proxy.Stop() }

// delayToxic delays every chunk by DelayNS nanoseconds from the moment the
// proxy read it, keeping their order.
type delayToxic struct {
	DelayNS int64 `json:"delay_ns"`
}

// GetBufferSize implements toxics.BufferedToxic: the chunks waiting out the
// delay.
func (t *delayToxic) GetBufferSize() int { return BufferChunks }

// Pipe implements toxics.Toxic. A chunk read at time r leaves at r+delay; the
// chunks behind it were read later and so are due later, and by the time one
// is taken from the queue its wait is already partly or wholly spent.
func (t *delayToxic) Pipe(stub *toxics.ToxicStub) {
	delay := time.Duration(t.DelayNS)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if !waitUntil(c.Timestamp.Add(delay), timer, stub.Interrupt) {
				// Toxiproxy interrupts to change the chain: hand the
				// chunk on rather than lose it.
				stub.Output <- c
				return
			}
			stub.Output <- c
		}
	}
}

// coarse is the wait beyond which waitUntil sleeps on a Go timer, which can
// be interrupted; it then sleeps the last fineWait precisely.
const (
	coarse   = 5 * time.Millisecond
	fineWait = 2 * time.Millisecond
)

// waitUntil returns at due, or false at once when interrupt is closed first.
// The Go runtime fires a timer of less than a millisecond up to a whole
// millisecond late when the process is idle (it waits on epoll, whose timeout
// counts milliseconds), which would make a 0.5 ms delay about 1 ms: the last
// fineWait is slept in the kernel instead (sleepPrecisely), which costs the
// goroutine an OS thread meanwhile.
func waitUntil(due time.Time, timer *time.Timer, interrupt <-chan struct{}) bool {
	for {
		wait := time.Until(due)
		if wait <= 0 {
			return true
		}
		if wait <= coarse {
			sleepPrecisely(wait)
			continue
		}
		timer.Reset(wait - fineWait)
		select {
		case <-timer.C:
		case <-interrupt:
			return false
		}
	}
}
