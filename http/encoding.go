package http

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
)

const jsonContentType = "application/json; charset=utf-8"

// errorStatus maps an error code to its HTTP status: the one place where the
// API's codes meet HTTP.
func errorStatus(code string) int {
	switch code {
	case flashorder.EINVALID:
		return http.StatusBadRequest
	case flashorder.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case flashorder.ENOTFOUND:
		return http.StatusNotFound
	case flashorder.EMETHODNOTALLOWED:
		return http.StatusMethodNotAllowed
	case flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED, flashorder.EINPROGRESS, flashorder.EINVALIDSTATE:
		return http.StatusConflict
	case flashorder.EBODYTOOLARGE:
		return http.StatusRequestEntityTooLarge
	case flashorder.EUNSUPPORTEDMEDIA:
		return http.StatusUnsupportedMediaType
	case flashorder.EUNKNOWNPRODUCT, flashorder.EKEYREUSED:
		return http.StatusUnprocessableEntity
	case flashorder.ERATELIMITED:
		return http.StatusTooManyRequests
	case flashorder.EOVERLOADED, flashorder.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorAnswer renders err as the API's error body with its status.
func errorAnswer(err error) (int, []byte) {
	code := flashorder.ErrorCode(err)
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: code, Message: flashorder.ErrorMessage(err)}})
	return errorStatus(code), body
}

// writeError answers with err. Server-side failures are logged with their
// cause; the client sees only the code and the safe message.
func (s *Server) writeError(c *gin.Context, err error) {
	status, body := errorAnswer(err)
	ri := info(c)
	ri.code = flashorder.ErrorCode(err)
	if status >= 500 {
		s.Logger.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "status", status,
			"request_id", ri.id, "err", err)
		if status == http.StatusServiceUnavailable {
			c.Header("Retry-After", "1")
		}
	}
	c.Data(status, jsonContentType, body)
	c.Abort()
}

func (s *Server) writeJSON(c *gin.Context, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.writeError(c, fmt.Errorf("http: encode answer: %w", err))
		return
	}
	c.Data(status, jsonContentType, body)
}

// limitBody caps every request body at MaxBodyBytes.
func limitBody(c *gin.Context) {
	if c.Request.ContentLength > MaxBodyBytes {
		status, body := errorAnswer(flashorder.Errorf(flashorder.EBODYTOOLARGE, "the body exceeds %d bytes", MaxBodyBytes))
		c.Data(status, jsonContentType, body)
		c.Abort()
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes)
}

// decodeJSON decodes the request body into v strictly: the content type must be
// application/json, unknown fields, wrong types and trailing data are refused.
func decodeJSON(c *gin.Context, v any) error {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		return flashorder.Errorf(flashorder.EUNSUPPORTEDMEDIA, "the body must be application/json")
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			if e := jsonError(err); flashorder.ErrorCode(e) == flashorder.EBODYTOOLARGE {
				return e
			}
		}
		return flashorder.Errorf(flashorder.EINVALID, "unexpected data after the JSON value")
	}
	return nil
}

// jsonError turns a decoding error into a client-safe invalid_request.
func jsonError(err error) error {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return flashorder.Errorf(flashorder.EBODYTOOLARGE, "the body exceeds %d bytes", MaxBodyBytes)
	case errors.Is(err, io.EOF):
		return flashorder.Errorf(flashorder.EINVALID, "the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return flashorder.Errorf(flashorder.EINVALID, "the body is truncated JSON")
	case errors.As(err, &syntaxErr):
		return flashorder.Errorf(flashorder.EINVALID, "malformed JSON at byte %d", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return flashorder.Errorf(flashorder.EINVALID, "the body must be a JSON object")
		}
		return flashorder.Errorf(flashorder.EINVALID, "field %s must be %s", typeErr.Field, jsonKind(typeErr))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return flashorder.Errorf(flashorder.EINVALID, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return flashorder.Errorf(flashorder.EINVALID, "malformed JSON")
	}
}

func jsonKind(e *json.UnmarshalTypeError) string {
	switch e.Type.Kind().String() {
	case "int64", "int":
		return "an integer in range"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "ptr":
		return "an object"
	default:
		return "of another type"
	}
}

// requireAdmin refuses requests without the admin bearer token.
func (s *Server) requireAdmin(c *gin.Context) {
	token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(s.adminToken)) != 1 {
		s.writeError(c, flashorder.Errorf(flashorder.EUNAUTHORIZED, "a valid admin bearer token is required"))
	}
}
