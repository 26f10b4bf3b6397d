package orderd

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/flashorder/flashorder/internal/buildinfo"
)

// printUsage is orderd -h: every flag with its ORDERD_* variable, its
// meaning and its default.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `usage: orderd [flags]

With no flags orderd runs the embedded default: SQLite under ./data, the batch
strategy, in-process lock and idempotency, port 8080. Every flag can also be set
by the environment variable shown with it; a flag wins over its variable.
orderd --version prints the build.

`)
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if typ != "" {
			head += " " + typ
		}
		fmt.Fprintf(w, "%-44s %s\n", head, EnvName(f.Name))
		fmt.Fprintf(w, "        %s", usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// versionRequested reports whether args ask for --version (or -version),
// which orderd answers before parsing anything else.
func versionRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--version" || a == "-version" {
			return true
		}
	}
	return false
}

// versionLine is what orderd --version prints.
func versionLine() string {
	return "orderd " + strings.TrimSpace(buildinfo.Read().String())
}
