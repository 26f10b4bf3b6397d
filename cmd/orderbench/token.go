package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/jwtauth"
)

// tokenCmd prints an HS256 token for one user of an orderd running with
// --auth jwt --jwt-secret: for trying the API with curl, and for tests.
func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("orderbench token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("jwt-secret", "", "orderd's --jwt-secret (default $ORDERD_JWT_SECRET)")
	sub := fs.String("sub", "", "the user: the token's sub claim (a valid user_id)")
	issuer := fs.String("jwt-issuer", "", "iss claim (orderd's --jwt-issuer)")
	audience := fs.String("jwt-audience", "", "aud claim (orderd's --jwt-audience)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *secret == "" {
		*secret = os.Getenv("ORDERD_JWT_SECRET")
	}
	if *secret == "" {
		return errors.New("--jwt-secret (or ORDERD_JWT_SECRET) is required")
	}
	if err := flashorder.ValidateUserID(*sub); err != nil {
		return fmt.Errorf("--sub: %s", flashorder.ErrorMessage(err))
	}
	token, err := jwtauth.Mint([]byte(*secret), *sub, *issuer, *audience, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	return nil
}
