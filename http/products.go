package http

import (
	"hash/fnv"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

// productView is a product as the API shows it: the stored fields, the sale
// window, and on the product page its status and the server's time, so that
// a page counts down to starts_at without trusting the device's clock.
type productView struct {
	SKU           string     `json:"sku"`
	Name          string     `json:"name"`
	PriceCents    int64      `json:"price_cents"`
	Stock         int64      `json:"stock"`
	Sold          int64      `json:"sold"`
	PerUserLimit  int64      `json:"per_user_limit"`
	StartsAt      *time.Time `json:"starts_at,omitempty"`
	EndsAt        *time.Time `json:"ends_at,omitempty"`
	PaymentWindow string     `json:"payment_window,omitempty"`
	// Admission is "queue" for a product sold through a waiting room
	// (absent: open); Sale its sale; AdmissionFactor its admission bound's
	// factor, the default filled in.
	Admission       string    `json:"admission,omitempty"`
	Sale            string    `json:"sale,omitempty"`
	AdmissionFactor float64   `json:"admission_factor,omitempty"`
	Status          string    `json:"status"`
	ServerTime      time.Time `json:"server_time"`
}

// productMaxAge is the product page's Cache-Control max-age: a CDN in front
// of orderd answers a crowd's refreshes for this long, no longer than the
// product cache's own staleness.
const productMaxAge = "public, max-age=1"

var productCacheControl = []string{productMaxAge}

func (s *Server) getProduct(c *gin.Context) {
	sku := c.Param("sku")
	if err := flashorder.ValidateSKU(sku); err != nil {
		s.writeError(c, err)
		return
	}
	p, err := s.cfg.Products.Product(c.Request.Context(), sku)
	if err != nil {
		s.writeError(c, err)
		return
	}
	body, etagEnd := encodeProduct(p, s.now())
	etag := productETag(body[:etagEnd])
	h := c.Writer.Header()
	h["Etag"] = []string{etag}
	h["Cache-Control"] = productCacheControl
	if inm := c.GetHeader("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		c.Status(http.StatusNotModified)
		c.Writer.WriteHeaderNow()
		return
	}
	writeBody(c, http.StatusOK, body)
}

// productETag returns a weak entity tag of the product page's content
// without its server_time (the one field that changes with every answer).
func productETag(content []byte) string {
	h := fnv.New64a()
	h.Write(content)
	return `W/"` + strconv.FormatUint(h.Sum64(), 36) + `"`
}

// etagMatches reports whether an If-None-Match header names etag (weak
// comparison, RFC 9110 13.1.2), or is "*".
func etagMatches(header, etag string) bool {
	opaque := etag[2:] // without W/
	for _, part := range splitComma(header) {
		if part == "*" || part == etag || part == opaque || (len(part) > 2 && part[:2] == "W/" && part[2:] == opaque) {
			return true
		}
	}
	return false
}

// splitComma splits a list header into its trimmed parts.
func splitComma(s string) []string {
	var parts []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			part := s[start:i]
			for len(part) > 0 && (part[0] == ' ' || part[0] == '\t') {
				part = part[1:]
			}
			for len(part) > 0 && (part[len(part)-1] == ' ' || part[len(part)-1] == '\t') {
				part = part[:len(part)-1]
			}
			if part != "" {
				parts = append(parts, part)
			}
			start = i + 1
		}
	}
	return parts
}

// newProductView returns p as the API shows it at now.
func newProductView(p *flashorder.Product, now time.Time) productView {
	v := productView{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Stock: p.Stock, Sold: p.Sold,
		PerUserLimit: p.PerUserLimit, StartsAt: p.StartsAt, EndsAt: p.EndsAt, Status: p.Status(now), ServerTime: now.UTC()}
	if p.PaymentWindow > 0 {
		v.PaymentWindow = p.PaymentWindow.String()
	}
	if p.Queued() {
		v.Admission, v.Sale, v.AdmissionFactor = p.Admission, p.Sale, p.Factor()
	}
	return v
}

func (s *Server) putProduct(c *gin.Context) {
	var in flashorder.ProductInput
	if err := decodeJSON(c, &in); err != nil {
		s.writeError(c, err)
		return
	}
	p, err := in.Product(c.Param("sku"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	stored, err := s.cfg.Store.PutProduct(c.Request.Context(), p)
	if err != nil {
		s.writeError(c, err)
		return
	}
	body, _ := encodeProduct(stored, s.now())
	writeBody(c, http.StatusOK, body)
}

func (s *Server) audit(c *gin.Context) {
	a, err := s.cfg.Store.Audit(c.Request.Context())
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, a)
}
