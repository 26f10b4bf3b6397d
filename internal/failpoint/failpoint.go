// Package failpoint pauses orderd at named points of its code, for fault
// tests that must catch a process in one exact state (a lock held, its write
// not yet made) rather than wherever a signal happens to land. It follows
// etcd's gofail in spirit, without code generation.
//
// In a normal build Hit is an empty function the compiler removes. A binary
// built with `-tags failpoints` reads the environment variable
// FLASHORDER_FAILPOINTS once at start:
//
//	FLASHORDER_FAILPOINTS='checkout/lock-held=4*sleep(3s)'
//
// a `;`-separated list of NAME=[COUNT*]sleep(DURATION) or
// NAME=[COUNT*]error(): the first COUNT passes through Hit(ctx, NAME) or
// Fail(ctx, NAME) (every pass when COUNT is left out) sleep DURATION, or until
// ctx ends; or, with error(), Fail returns ErrInjected (Hit ignores error()).
// Each pass that acts writes `failpoint NAME: ACTION` to stderr first. The
// points are listed where they are used:
// `grep -rn failpoint.Hit`.
package failpoint

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// EnvVar is the environment variable a `-tags failpoints` build reads.
const EnvVar = "FLASHORDER_FAILPOINTS"

// Term is one failpoint's action on each of the first Count passes (Count <
// 0: every pass): sleep Sleep, or, when Fail is set, make Fail return
// ErrInjected.
type Term struct {
	Count int
	Sleep time.Duration
	Fail  bool
}

// Parse reads a FLASHORDER_FAILPOINTS value into terms by failpoint name.
func Parse(spec string) (map[string]Term, error) {
	terms := map[string]Term{}
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, action, ok := strings.Cut(part, "=")
		name, action = strings.TrimSpace(name), strings.TrimSpace(action)
		if !ok || name == "" {
			return nil, fmt.Errorf("failpoint: %q: want NAME=[COUNT*]sleep(DURATION) or NAME=[COUNT*]error()", part)
		}
		term := Term{Count: -1}
		if c, rest, ok := strings.Cut(action, "*"); ok {
			n, err := strconv.Atoi(c)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("failpoint: %s: count %q is not a positive integer", name, c)
			}
			term.Count, action = n, rest
		}
		if action == "error()" {
			term.Fail = true
		} else {
			arg, prefixed := strings.CutPrefix(action, "sleep(")
			arg, closed := strings.CutSuffix(arg, ")")
			if !prefixed || !closed {
				return nil, fmt.Errorf("failpoint: %s: action %q: want sleep(DURATION) or error()", name, action)
			}
			d, err := time.ParseDuration(arg)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("failpoint: %s: sleep(%s): want a positive duration such as 3s", name, arg)
			}
			term.Sleep = d
		}
		if _, dup := terms[name]; dup {
			return nil, fmt.Errorf("failpoint: %s is set twice", name)
		}
		terms[name] = term
	}
	return terms, nil
}

// ErrInjected is the error a failpoint with the action error() makes Fail
// return.
var ErrInjected = errors.New("failpoint: injected fault")
