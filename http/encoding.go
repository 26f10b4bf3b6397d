package http

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"

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
	code, message := codeAndMessage(err)
	return errorStatus(code), encodeError(code, message)
}

// codeAndMessage returns flashorder.ErrorCode(err) and
// flashorder.ErrorMessage(err), without their errors.As (and its allocation)
// when err is an *flashorder.Error itself, as it mostly is.
func codeAndMessage(err error) (code, message string) {
	if e, ok := err.(*flashorder.Error); ok && e != nil {
		return e.Code, e.Message
	}
	return flashorder.ErrorCode(err), flashorder.ErrorMessage(err)
}

// writeError answers with err. Server-side failures are logged with their
// cause; the client sees only the code and the safe message.
func (s *Server) writeError(c *gin.Context, err error) {
	code, message := codeAndMessage(err)
	status := errorStatus(code)
	ri := info(c)
	ri.code = code
	if status >= 500 {
		// A client that went away (its connection closed) takes its
		// request's context with it: not the server's failure, and under
		// load thousands at once, so not an error line each.
		level := slog.LevelError
		if errors.Is(c.Request.Context().Err(), context.Canceled) {
			level = slog.LevelDebug
		}
		s.Logger.Log(c.Request.Context(), level, "request failed", "method", c.Request.Method, "path", c.Request.URL.Path,
			"status", status, "request_id", ri.id, "err", err)
		if status == http.StatusServiceUnavailable {
			c.Writer.Header()["Retry-After"] = retryAfterOne
		}
	}
	writeBody(c, status, encodeError(code, message))
	c.Abort()
}

func (s *Server) writeJSON(c *gin.Context, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.writeError(c, fmt.Errorf("http: encode answer: %w", err))
		return
	}
	writeBody(c, status, body)
}

// Header values that never change, shared by every answer: net/http and gin
// replace a header's value slice, never write into it.
var (
	jsonContentTypeValue = []string{jsonContentType}
	retryAfterOne        = []string{"1"}
	replayedTrue         = []string{"true"}
)

// writeBody answers status with a JSON body and a trailing newline. It is
// gin's c.Data (same headers: Content-Type unless set, Content-Length)
// without c.Data's allocations per answer.
func writeBody(c *gin.Context, status int, body []byte) {
	h := c.Writer.Header()
	if len(h["Content-Type"]) == 0 {
		h["Content-Type"] = jsonContentTypeValue
	}
	c.Status(status)
	if !bodyAllowed(status) {
		c.Writer.WriteHeaderNow()
		return
	}
	if len(body) == 0 {
		return
	}
	// Every JSON answer ends with a newline, as curl users and line-based
	// tools expect; the encoders (and answers stored by older versions) leave
	// it out, so it is written here, once.
	nl := body[len(body)-1] != '\n'
	n := len(body)
	if nl {
		n++
	}
	h["Content-Length"] = info(c).headerValue(decimal(n))
	_, err := c.Writer.Write(body)
	if err == nil && nl {
		_, err = c.Writer.Write(newline)
	}
	if err != nil {
		_ = c.Error(err)
		c.Abort()
	}
}

// newline ends every JSON answer.
var newline = []byte{'\n'}

// bodyAllowed reports whether an answer with status may have a body, as
// gin decides it.
func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}

// limitBody caps every request body at MaxBodyBytes.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.ContentLength > MaxBodyBytes {
		s.writeError(c, flashorder.Errorf(flashorder.EBODYTOOLARGE, "the body exceeds %d bytes", MaxBodyBytes))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes)
}

// checkJSON refuses a request whose body is not application/json (parameters
// such as charset allowed).
func checkJSON(c *gin.Context) error {
	switch ct := headerValue(c.Request.Header, "Content-Type"); ct {
	case "application/json", jsonContentType: // the usual ones, without parsing
	default:
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return flashorder.Errorf(flashorder.EUNSUPPORTEDMEDIA, "the body must be application/json")
		}
	}
	return nil
}

// headerValue returns the first value of the canonical header key in h.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// decodeJSON decodes the request body into v strictly: the content type must be
// application/json, unknown fields, wrong types and trailing data are refused.
func decodeJSON(c *gin.Context, v any) error {
	if err := checkJSON(c); err != nil {
		return err
	}
	return decodeStrict(c.Request.Body, v)
}

// bodyBuffers holds the buffers that order bodies are read into.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decodeOrder decodes an order request body into req as decodeJSON does,
// same errors included. It reads the body whole and parses it by hand when it
// has the plain shape; anything else goes to decodeStrict, replayed from what
// was read, read error included, so that encoding/json sees the same stream.
func decodeOrder(c *gin.Context, req *flashorder.OrderRequest) error {
	if err := checkJSON(c); err != nil {
		return err
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 2*MaxBodyBytes {
			buf.Reset()
			bodyBuffers.Put(buf)
		}
	}()
	buf.Reset()
	_, readErr := buf.ReadFrom(c.Request.Body)
	if readErr == nil && parseOrderRequest(buf.Bytes(), req) {
		return nil
	}
	var body io.Reader = bytes.NewReader(buf.Bytes())
	if readErr != nil {
		body = io.MultiReader(body, errReader{readErr})
	}
	return decodeStrict(body, req)
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// decodeStrict decodes one JSON value from r into v: unknown fields, wrong
// types and trailing data are refused.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
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
