package flashorder_test

import (
	"testing"

	"github.com/flashorder/flashorder"
)

func TestStatusCanBecome(t *testing.T) {
	all := []flashorder.Status{flashorder.StatusCreated, flashorder.StatusPaid, flashorder.StatusCancelled, flashorder.StatusExpired}
	allowed := map[[2]flashorder.Status]bool{
		{flashorder.StatusCreated, flashorder.StatusPaid}:      true,
		{flashorder.StatusCreated, flashorder.StatusCancelled}: true,
		{flashorder.StatusCreated, flashorder.StatusExpired}:   true,
	}
	for _, from := range all {
		for _, to := range all {
			if got := from.CanBecome(to); got != allowed[[2]flashorder.Status{from, to}] {
				t.Errorf("%s -> %s: CanBecome %v", from, to, got)
			}
		}
	}
	if flashorder.Status("bogus").CanBecome(flashorder.StatusPaid) || flashorder.StatusCreated.CanBecome("bogus") {
		t.Error("an unknown status takes part in a transition")
	}
}
