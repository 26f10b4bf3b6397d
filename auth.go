package flashorder

import "context"

// Authenticator verifies a user's bearer token (a JWT, say) and returns the
// user it names. A token it does not accept is an EUNAUTHORIZED error whose
// message says why, without the token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (userID string, err error)
}
