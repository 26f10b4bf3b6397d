package http

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// OpenAPI is the OpenAPI 3 description of the API, served at /openapi.json.
// A test keeps it equal to the routes and true to the answers.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(c *gin.Context) { c.Data(http.StatusOK, jsonContentType, OpenAPI) }

// Route is one route the server answers: an HTTP method and a Gin path
// pattern such as /api/v1/orders/:id.
type Route struct {
	Method string
	Path   string
}

// Routes returns every route the server registered.
func (s *Server) Routes() []Route {
	ri := s.router.Routes()
	routes := make([]Route, len(ri))
	for i, r := range ri {
		routes[i] = Route{Method: r.Method, Path: r.Path}
	}
	return routes
}
