//go:build !failpoints

package failpoint

import "context"

// Enabled reports whether this binary was built with `-tags failpoints`.
const Enabled = false

// Hit does nothing: this binary was built without `-tags failpoints`.
func Hit(context.Context, string) {}

// Fail returns nil: this binary was built without `-tags failpoints`.
func Fail(context.Context, string) error { return nil }
