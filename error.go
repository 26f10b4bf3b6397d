package flashorder

import (
	"errors"
	"fmt"
	"time"
)

// Error codes, the machine-readable part of every error that reaches a client.
// The http package maps each code to one HTTP status.
const (
	EINVALID          = "invalid_request"
	EBODYTOOLARGE     = "body_too_large"
	EUNSUPPORTEDMEDIA = "unsupported_media_type"
	EUNAUTHORIZED     = "unauthorized"
	EFORBIDDEN        = "forbidden"
	// ECHALLENGEFAILED refuses a waiting-room join whose bot challenge
	// token is missing or that the challenge's verifier rejected (403).
	ECHALLENGEFAILED  = "challenge_failed"
	ENOTFOUND         = "not_found"
	EMETHODNOTALLOWED = "method_not_allowed"
	ESOLDOUT          = "sold_out"
	ENOTSTARTED       = "not_started"
	ESALEENDED        = "sale_ended"
	ELIMITEXCEEDED    = "limit_exceeded"
	EUNKNOWNPRODUCT   = "unknown_product"
	EINPROGRESS       = "request_in_progress"
	EKEYREUSED        = "idempotency_key_reused"
	EINVALIDSTATE     = "invalid_state"
	ERATELIMITED      = "rate_limited"
	// EADMISSIONREQUIRED refuses an order for a product sold through a
	// waiting room without a valid admission token; EADMISSIONUSED one
	// whose token was used for another order.
	EADMISSIONREQUIRED = "admission_required"
	EADMISSIONUSED     = "admission_used"
	EOVERLOADED        = "overloaded"
	EUNAVAILABLE       = "unavailable"
	EINTERNAL          = "internal"
)

// ErrTooMany reports that a read found more rows than its caller's bound.
var ErrTooMany = errors.New("flashorder: more rows than the bound")

// ErrIdempotencyKeyTaken reports that an order under the same idempotency key
// already exists in the database. Callers look that order up and replay it.
var ErrIdempotencyKeyTaken = errors.New("flashorder: idempotency key already used by a stored order")

// Error is an application error: a code from the list above and a message that
// is safe to show to a client. Err, when set, is the underlying cause; it is
// logged, never shown.
type Error struct {
	Code    string
	Message string
	// StartsAt, for ENOTSTARTED, is when the sale opens: the HTTP layer
	// answers it in the body and as Retry-After.
	StartsAt time.Time
	Err      error
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("flashorder error: code=%s message=%s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("flashorder error: code=%s message=%s", e.Code, e.Message)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ProductNotFound is the ENOTFOUND error of a SKU without a product.
func ProductNotFound(sku string) *Error {
	return Errorf(ENOTFOUND, "product %q not found", sku)
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err: the message of its first
// *Error, or a generic text for any other error, so that internal details never
// reach a client.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
