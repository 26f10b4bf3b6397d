package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

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
	case flashorder.EFORBIDDEN, flashorder.EADMISSIONREQUIRED, flashorder.ECHALLENGEFAILED:
		return http.StatusForbidden
	case flashorder.ENOTFOUND:
		return http.StatusNotFound
	case flashorder.EMETHODNOTALLOWED:
		return http.StatusMethodNotAllowed
	case flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED, flashorder.EINPROGRESS, flashorder.EINVALIDSTATE,
		flashorder.ENOTSTARTED, flashorder.ESALEENDED, flashorder.EADMISSIONUSED:
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
	// StartsAt is a not_started refusal's start time.
	StartsAt *time.Time `json:"starts_at,omitempty"`
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
		s.cfg.Logger.Log(c.Request.Context(), level, "request failed", "method", c.Request.Method, "path", c.Request.URL.Path,
			"status", status, "request_id", ri.id, "err", err)
		if status == http.StatusServiceUnavailable {
			c.Writer.Header()["Retry-After"] = retryAfterOne
		}
	}
	if e, ok := err.(*flashorder.Error); ok && !e.StartsAt.IsZero() {
		// A not_started refusal: come back when the sale opens.
		c.Writer.Header()["Retry-After"] = ri.headerValue(decimal(retryAfterSeconds(e.StartsAt.Sub(s.now()))))
		writeBody(c, status, encodeErrorStartsAt(code, message, e.StartsAt))
		c.Abort()
		return
	}
	writeBody(c, status, encodeError(code, message))
	c.Abort()
}

// retryAfterSeconds rounds d up to whole seconds, at least 1: a client that
// waits Retry-After never comes back early.
func retryAfterSeconds(d time.Duration) int {
	secs := int((d + time.Second - 1) / time.Second)
	return max(secs, 1)
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
	connectionClose      = []string{"close"}
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
	// tools expect; the encoders leave it out, so it is written here, once.
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

// limitBody caps every request body at MaxBodyBytes, and refuses a body in
// a Content-Encoding that the server does not decode (gzip, say): read as
// plain JSON, it would only be a puzzling 400.
func (s *Server) limitBody(c *gin.Context) {
	if ce := c.Request.Header["Content-Encoding"]; len(ce) > 0 && (len(ce) > 1 || !strings.EqualFold(ce[0], "identity")) {
		s.writeError(c, flashorder.Errorf(flashorder.EUNSUPPORTEDMEDIA, "Content-Encoding is not supported; send the body unencoded"))
		return
	}
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

// errBodyTimeout is the answer to a body that did not arrive in time.
func errBodyTimeout() error {
	return flashorder.Errorf(flashorder.EINVALID, "request body not received in time")
}

// readOrderBody reads an order request's body whole (bounded by
// MaxBodyBytes and BodyTimeout) before the request takes an in-flight slot
// in shed: a client that sends its body slowly holds a connection, not one
// of the MaxInflight slots that orders need. decodeOrder parses what it read.
func (s *Server) readOrderBody(c *gin.Context) {
	if err := checkJSON(c); err != nil {
		s.writeError(c, err)
		return
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	ri := info(c)
	defer func() {
		ri.body, ri.bodyErr = nil, nil
		if buf.Cap() <= 2*MaxBodyBytes {
			bodyBuffers.Put(buf)
		}
	}()
	var rc *http.ResponseController
	if s.cfg.BodyTimeout > 0 {
		rc = http.NewResponseController(c.Writer)
		_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	}
	_, err := buf.ReadFrom(c.Request.Body)
	if timedOut(err) {
		// The deadline stays: net/http gives up on the rest of the body
		// at once and closes the connection, instead of waiting for it.
		c.Writer.Header()["Connection"] = connectionClose
		s.writeError(c, errBodyTimeout())
		return
	}
	if rc != nil && err == nil {
		// No deadline for the rest of the request: net/http's read in
		// the background (for a client that goes away) must not time out
		// and cancel an order that is still being placed.
		_ = rc.SetReadDeadline(time.Time{})
	}
	ri.body, ri.bodyErr = buf, err
	c.Next()
}

// timedOut reports whether err is a read that hit its deadline.
func timedOut(err error) bool {
	if err == nil { // the usual case: no error, and no allocation for ne
		return false
	}
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// decodeOrder decodes the order request body that readOrderBody read into
// req as decodeJSON does, same errors included. It parses the body by hand
// when it has the plain shape; anything else goes to decodeStrict, replayed
// from what was read, read error included, so that encoding/json sees the
// same stream.
func decodeOrder(c *gin.Context, req *flashorder.OrderRequest) error {
	ri := info(c)
	if ri.body == nil {
		return flashorder.Errorf(flashorder.EINVALID, "the body is empty")
	}
	if ri.bodyErr == nil && parseOrderRequest(ri.body.Bytes(), req) {
		return nil
	}
	var body io.Reader = bytes.NewReader(ri.body.Bytes())
	if ri.bodyErr != nil {
		body = io.MultiReader(body, errReader{ri.bodyErr})
	}
	return decodeStrict(body, req)
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// decodeStrict decodes one JSON value from r into v: unknown fields, wrong
// types and trailing data are refused.
func decodeStrict(r io.Reader, v any) error {
	var read bytes.Buffer
	dec := json.NewDecoder(io.TeeReader(r, &read))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			if e := jsonError(err); flashorder.ErrorCode(e) == flashorder.EBODYTOOLARGE || timedOut(err) {
				return e
			}
		}
		return flashorder.Errorf(flashorder.EINVALID, "unexpected data after the JSON value")
	}
	return checkKeys(read.Bytes())
}

// checkKeys refuses what encoding/json lets through: a key that comes twice
// in one object (it keeps the last) and a key that matches a field only
// case-insensitively ("USER_ID", or "ſku" with a long s). b is one valid
// JSON value whose keys all matched fields; every field name of the API is
// lower-case ASCII, digits and underscores.
func checkKeys(b []byte) error {
	type frame struct {
		object  bool
		keyNext bool
		keys    []string
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF: b was decoded without an error before
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].keyNext {
			top := &stack[n-1]
			key, ok := tok.(string)
			if !ok { // the object's closing brace
				stack = stack[:n-1]
				continue
			}
			if !plainKey(key) {
				return flashorder.Errorf(flashorder.EINVALID, "unknown field %q (field names are lower case)", key)
			}
			if slices.Contains(top.keys, key) {
				return flashorder.Errorf(flashorder.EINVALID, "field %q appears twice", key)
			}
			top.keys = append(top.keys, key)
			top.keyNext = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, keyNext: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: its object, if any, expects a key next.
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].keyNext = true
		}
	}
}

// plainKey reports whether key is lower-case ASCII letters, digits and
// underscores, as every field name of the API is.
func plainKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// jsonError turns a decoding error into a client-safe invalid_request.
func jsonError(err error) error {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return flashorder.Errorf(flashorder.EBODYTOOLARGE, "the body exceeds %d bytes", MaxBodyBytes)
	case timedOut(err):
		return errBodyTimeout()
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
