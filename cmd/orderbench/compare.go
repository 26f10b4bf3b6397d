package main

import (
	"context"
	"io"
)

func compareCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return nil
}
