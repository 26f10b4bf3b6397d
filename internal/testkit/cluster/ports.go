package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// portClaims is where scripts/services.sh claims ports (a symlink PORT ->
// the claiming run's directory); the harness claims its orderd ports the same
// way, so that a concurrent run of either never picks the same port.
const portClaims = "/tmp/flashorder-ports"

// FreePort picks a free loopback port below the kernel's ephemeral range (so
// that no outgoing connection takes it while an instance is down) and claims
// it for owner, a directory that must exist while the port is in use. A claim
// whose directory is gone is stale and may be taken over.
func FreePort(owner string) (int, error) {
	lo, hi := 20000, 32767
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			elo, _ := strconv.Atoi(f[0])
			ehi, _ := strconv.Atoi(f[1])
			switch {
			case elo > 21000:
				hi = elo - 1
			case ehi > 0 && ehi < 64000:
				lo, hi = ehi+1, 65000
			}
		}
	}
	if err := os.MkdirAll(portClaims, 0o1777); err != nil {
		return 0, fmt.Errorf("cluster: port claims: %w", err)
	}
	for range 500 {
		port := lo + rand.IntN(hi-lo+1)
		claim := filepath.Join(portClaims, strconv.Itoa(port))
		if err := os.Symlink(owner, claim); err != nil {
			if !errors.Is(err, os.ErrExist) {
				return 0, fmt.Errorf("cluster: claim port %d: %w", port, err)
			}
			target, err := os.Readlink(claim)
			if err != nil {
				continue
			}
			if _, err := os.Stat(target); err == nil {
				continue // claimed by a live run
			}
			_ = os.Remove(claim)
			if os.Symlink(owner, claim) != nil {
				continue
			}
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // used by someone who does not claim; the claim dies with owner
		}
		_ = ln.Close()
		return port, nil
	}
	return 0, fmt.Errorf("cluster: no free port in %d-%d", lo, hi)
}
