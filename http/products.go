package http

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

func (s *Server) getProduct(c *gin.Context) {
	sku := c.Param("sku")
	if err := flashorder.ValidateSKU(sku); err != nil {
		s.writeError(c, err)
		return
	}
	p, err := s.cfg.Store.Product(c.Request.Context(), sku)
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, p)
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
	s.writeJSON(c, http.StatusOK, stored)
}

func (s *Server) audit(c *gin.Context) {
	a, err := s.cfg.Store.Audit(c.Request.Context())
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, a)
}
