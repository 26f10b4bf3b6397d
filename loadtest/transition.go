package loadtest

import (
	"context"
	"errors"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
)

// transitionWorkers is how many pays and cancels the audit has in flight
// at once (Config.EventsPay, EventsCancel).
const transitionWorkers = 32

// moveState is what the answer to a pay or cancel said happened.
type moveState int

const (
	// moveDone: 200, the order moved.
	moveDone moveState = iota
	// moveRefused: 409 invalid_state, the order had moved already
	// (expired): it must have a transition event of its own.
	moveRefused
	// moveUnknown: no answer, or another error: its outcome is unknown,
	// its events are not judged.
	moveUnknown
)

// move is one pay or cancel the audit made: the event its 200 promises
// (order.paid or order.cancelled) and what its answer said.
type move struct {
	want  flashorder.EventType
	state moveState
}

// pickMoves chooses the orders of byID to pay and to cancel: shares pay and
// cancel of them, picked by a shuffle seeded with the run's id, so that a
// run's choice can be made again. It returns the event each promises by
// order id.
func pickMoves(byID map[string]record, pay, cancel float64, runID string) map[string]flashorder.EventType {
	ids := slices.Sorted(maps.Keys(byID))
	h := fnv.New64a()
	h.Write([]byte(runID))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0))
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	nPay := int(math.Round(pay * float64(len(ids))))
	nCancel := min(int(math.Round(cancel*float64(len(ids)))), len(ids)-nPay)
	picked := make(map[string]flashorder.EventType, nPay+nCancel)
	for i, id := range ids[:nPay+nCancel] {
		picked[id] = flashorder.EventOrderPaid
		if i >= nPay {
			picked[id] = flashorder.EventOrderCancelled
		}
	}
	return picked
}

// transition pays and cancels the orders picked (see pickMoves), with the
// admin's token (pay needs it with auth jwt; it acts for any user),
// transitionWorkers at a time, and returns what each answer said. An error
// other than 409 invalid_state is a violation: a 201's order must be
// payable or cancellable, or have moved already.
func transition(ctx context.Context, admin *orderhttp.Client, picked map[string]flashorder.EventType, v *violations) map[string]move {
	moves := make(map[string]move, len(picked))
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(transitionWorkers)
	for _, id := range slices.Sorted(maps.Keys(picked)) {
		want := picked[id]
		g.Go(func() error {
			var err error
			if want == flashorder.EventOrderPaid {
				_, err = admin.PayOrder(ctx, id)
			} else {
				_, err = admin.CancelOrder(ctx, id)
			}
			m := move{want: want, state: moveDone}
			var ce *orderhttp.ClientError
			switch {
			case err == nil:
			case errors.As(err, &ce) && ce.Status == http.StatusConflict && ce.Code == flashorder.EINVALIDSTATE:
				m.state = moveRefused
			default:
				m.state = moveUnknown
			}
			mu.Lock()
			defer mu.Unlock()
			moves[id] = m
			if m.state == moveUnknown {
				v.add("events transition", "%s order %s, answered 201: %v", verbOf(want), id, err)
			}
			return nil
		})
	}
	_ = g.Wait()
	return moves
}
