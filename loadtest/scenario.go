package loadtest

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnknownScenario is returned (wrapped) by NamedScenario for a name that
// is not in ScenarioNames.
var ErrUnknownScenario = errors.New("loadtest: unknown scenario")

// ScenarioStock is the stock of every product in the named scenarios: enough
// that no SKU sells out even in a long run at tens of thousands of orders per
// second, so that the numbers measure taking orders, not refusing them.
const ScenarioStock = 10_000_000

// ScenarioNames lists the named scenarios, from one hot SKU to the full flash
// sale; each adds one thing to the one before it (sale adds the user pool and
// its per-user limit to keys). The last, drop, is the sale as it happens.
func ScenarioNames() []string {
	return []string{"hot", "catalogue", "carts", "keys", "sale", "drop"}
}

// The drop scenario's values (NamedScenario("drop")).
const (
	DropUsers     = 20_000
	DropStock     = 2_000
	DropLead      = 10 * time.Second
	DropClockSkew = time.Second
	DropAfter     = 5 * time.Second
)

// NamedScenario returns the workload of the benchmark tables called name, so
// that anyone can rerun them:
//
//   - hot: one SKU, one item per order, no Idempotency-Key, a new user per
//     order.
//   - catalogue: 100 SKUs picked with a Zipf distribution of exponent 1.1
//     (SKU 0 gets about a quarter of the orders), otherwise as hot.
//   - carts: catalogue, and 20% of the orders are carts of 3 distinct SKUs.
//   - keys: carts with an Idempotency-Key on every order.
//   - sale: keys with a pool of 10,000 users and a per-user limit of 3 units
//     of each product: a run of about 100,000 orders gets some 8% of
//     limit_exceeded (a few thousand orders: almost none, 300,000: about a
//     quarter), the rest succeed.
//   - drop: the sale as it happens (see Scenario.Lead): one SKU with 2,000
//     units, 1 per user, for 20,000 users who arrive over the 10s before
//     T0, clocks off by up to 1s either way, and go on reloading for 5s
//     once told sold_out; an Idempotency-Key on every order.
//
// Every product of the others has ScenarioStock units. Fields the scenario
// leaves zero take Config's defaults (prefix "bench-", price 1999, quantity
// 1, a drop's refresh 1s).
func NamedScenario(name string) (Scenario, error) {
	hot := Scenario{Name: "hot", SKUs: 1, Stock: ScenarioStock, NoKeys: true}
	catalogue := hot
	catalogue.Name, catalogue.SKUs, catalogue.Zipf = "catalogue", 100, 1.1
	carts := catalogue
	carts.Name, carts.MultiShare, carts.MultiItems = "carts", 0.2, 3
	keys := carts
	keys.Name, keys.NoKeys = "keys", false
	sale := keys
	sale.Name, sale.Users, sale.PerUserLimit = "sale", 10_000, 3
	drop := Scenario{Name: "drop", SKUs: 1, Stock: DropStock, PerUserLimit: 1, Users: DropUsers, Lead: DropLead,
		ClockSkew: DropClockSkew, After: DropAfter}
	switch name {
	case "hot":
		return hot, nil
	case "catalogue":
		return catalogue, nil
	case "carts":
		return carts, nil
	case "keys":
		return keys, nil
	case "sale":
		return sale, nil
	case "drop":
		return drop, nil
	}
	return Scenario{}, fmt.Errorf("%w %q: valid scenarios are %s", ErrUnknownScenario, name, strings.Join(ScenarioNames(), ", "))
}

// String describes the scenario in one line, for reports.
func (s Scenario) String() string {
	var skus string
	switch {
	case s.SKUs <= 1:
		skus = "1 SKU"
	case s.Zipf > 1:
		skus = fmt.Sprintf("%d SKUs (Zipf %g)", s.SKUs, s.Zipf)
	default:
		skus = fmt.Sprintf("%d SKUs (uniform)", s.SKUs)
	}
	skus += fmt.Sprintf(" with stock %d", s.Stock)
	if s.PerUserLimit > 0 {
		skus += fmt.Sprintf(" and a per-user limit of %d", s.PerUserLimit)
	}
	parts := []string{skus}
	items := "1 item per order"
	if s.MultiShare > 0 {
		items = fmt.Sprintf("%.4g%% carts of %d items", 100*s.MultiShare, s.MultiItems)
	}
	if s.Quantity > 1 {
		items += fmt.Sprintf(", %d units per item", s.Quantity)
	}
	parts = append(parts, items)
	if s.NoKeys {
		parts = append(parts, "no Idempotency-Key")
	} else {
		parts = append(parts, "an Idempotency-Key on every order")
	}
	if s.RetryShare > 0 {
		parts = append(parts, fmt.Sprintf("%.4g%% retries", 100*s.RetryShare))
	}
	if s.Users > 0 {
		parts = append(parts, fmt.Sprintf("%d users", s.Users))
	} else {
		parts = append(parts, "a new user per order")
	}
	if s.IsDrop() {
		parts = append(parts, fmt.Sprintf("a drop: the sale starts after a %s lead, clocks off by up to ±%s, reloading for %s after sold_out",
			s.Lead, s.ClockSkew, s.After))
	}
	desc := strings.Join(parts, ", ")
	if s.Name != "" {
		desc = s.Name + ": " + desc
	}
	return desc
}
