// Package fakeorderd is an in-memory fake of orderd's order API, correct or
// deliberately broken, for testing that orderbench's audit catches a server
// that oversells, loses or doubles orders. It is not a second implementation
// of flashorder: it keeps no invariants beyond what the tests need.
package fakeorderd

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flashorder/flashorder"
)

// Fault is one way the fake misbehaves.
type Fault int

// The faults.
const (
	// None is a correct server.
	None Fault = iota
	// LoseOrder answers 201 for every 10th order but never stores it: GET
	// says 404, stock is taken anyway.
	LoseOrder
	// Oversell lets the audit endpoint report sold > restocked.
	Oversell
	// DoubleID answers the same order id to different keys.
	DoubleID
	// PhantomStock takes two units for every unit ordered (stock taken does
	// not match the 201s).
	PhantomStock
	// IgnoreLimit ignores per-user limits.
	IgnoreLimit
)

// Server is the fake API as an http.Handler.
type Server struct {
	// Fault is the misbehaviour; None by default.
	Fault Fault
	// Delay is added to every order request.
	Delay time.Duration

	mu       sync.Mutex
	products map[string]*product
	orders   map[string]*flashorder.Order
	keys     map[string]string
	held     map[string]int64 // user + "\x00" + sku -> units
	seq      int
}

type product struct {
	flashorder.Product
	restocked int64
}

// New returns a fake with the given fault.
func New(f Fault) *Server {
	return &Server{Fault: f, products: map[string]*product{}, orders: map[string]*flashorder.Order{},
		keys: map[string]string{}, held: map[string]int64{}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": code}})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v1/products/"):
		s.putProduct(w, r, strings.TrimPrefix(r.URL.Path, "/api/v1/products/"))
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/products/"):
		s.mu.Lock()
		p, ok := s.products[strings.TrimPrefix(r.URL.Path, "/api/v1/products/")]
		var out flashorder.Product
		if ok {
			out = p.Product
		}
		s.mu.Unlock()
		if !ok {
			writeError(w, 404, flashorder.ENOTFOUND)
			return
		}
		writeJSON(w, 200, out)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/orders":
		s.createOrder(w, r)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/orders/"):
		s.mu.Lock()
		o, ok := s.orders[strings.TrimPrefix(r.URL.Path, "/api/v1/orders/")]
		s.mu.Unlock()
		if !ok {
			writeError(w, 404, flashorder.ENOTFOUND)
			return
		}
		writeJSON(w, 200, o)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/admin/audit":
		s.audit(w)
	default:
		writeError(w, 404, flashorder.ENOTFOUND)
	}
}

func (s *Server) putProduct(w http.ResponseWriter, r *http.Request, sku string) {
	var in flashorder.ProductInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, 400, flashorder.EINVALID)
		return
	}
	p, err := in.Product(sku)
	if err != nil {
		writeError(w, 400, flashorder.EINVALID)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.products[sku]
	np := &product{Product: p}
	if ok {
		np.restocked = old.restocked + p.Stock - old.Stock
		np.Sold = old.Sold
	} else {
		np.restocked = p.Stock
	}
	s.products[sku] = np
	writeJSON(w, 200, np.Product)
}

func (s *Server) createOrder(w http.ResponseWriter, r *http.Request) {
	if s.Delay > 0 {
		time.Sleep(s.Delay)
	}
	var req flashorder.OrderRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Validate() != nil {
		writeError(w, 400, flashorder.EINVALID)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.keys[key]; ok && key != "" {
		if o, ok := s.orders[id]; ok {
			w.Header().Set("Idempotent-Replayed", "true")
			writeJSON(w, 201, o)
			return
		}
	}
	for _, it := range req.Items {
		p, ok := s.products[it.SKU]
		if !ok {
			writeError(w, 422, flashorder.EUNKNOWNPRODUCT)
			return
		}
		if p.PerUserLimit > 0 && s.Fault != IgnoreLimit && s.held[req.UserID+"\x00"+it.SKU]+it.Quantity > p.PerUserLimit {
			writeError(w, 409, flashorder.ELIMITEXCEEDED)
			return
		}
		if p.Stock < it.Quantity {
			writeError(w, 409, flashorder.ESOLDOUT)
			return
		}
	}
	s.seq++
	o := &flashorder.Order{ID: "o" + strconv.Itoa(s.seq), UserID: req.UserID, Status: flashorder.StatusCreated, CreatedAt: time.Now().UTC()}
	if s.Fault == DoubleID && s.seq%5 == 0 {
		o.ID = "o" + strconv.Itoa(s.seq-1)
	}
	for _, it := range req.Items {
		p := s.products[it.SKU]
		take := it.Quantity
		if s.Fault == PhantomStock {
			take *= 2
		}
		p.Stock -= take
		p.Sold += take
		s.held[req.UserID+"\x00"+it.SKU] += it.Quantity
		o.Items = append(o.Items, flashorder.OrderItem{SKU: it.SKU, Quantity: it.Quantity, PriceCents: p.PriceCents})
	}
	if !(s.Fault == LoseOrder && s.seq%10 == 0) {
		s.orders[o.ID] = o
	}
	if key != "" {
		s.keys[key] = o.ID
	}
	w.Header().Set("Location", "/api/v1/orders/"+o.ID)
	writeJSON(w, 201, o)
}

func (s *Server) audit(w http.ResponseWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := flashorder.Audit{OK: true}
	for sku, p := range s.products {
		sold := p.Sold
		if s.Fault == Oversell {
			sold = p.restocked + 1
		}
		l := flashorder.NewAuditLine(sku, p.restocked, p.Stock, sold)
		if s.Fault == Oversell {
			l.OK = true // a server that lies about its own invariant
		}
		a.OK = a.OK && l.OK
		a.Products = append(a.Products, l)
	}
	writeJSON(w, 200, a)
}
