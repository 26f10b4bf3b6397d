// Package buildinfo tells which build of flashorder is running, from the
// information the Go toolchain embeds in every binary (runtime/debug): the
// module version (set by go install ...@version, "(devel)" in a source tree)
// and the VCS revision (set by go build in a git checkout).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is one binary's build.
type Info struct {
	// Version is the main module's version, "(devel)" when built from a
	// source tree, or "unknown" without build information.
	Version string
	// Revision is the VCS revision, with "-dirty" when the tree had local
	// changes; "unknown" when the build recorded none.
	Revision string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && info.Revision != "unknown" {
		info.Revision += "-dirty"
	}
	return info
}

// String renders the build for --version: "orderd (devel) revision abc123
// go1.26.8".
func (i Info) String() string {
	return fmt.Sprintf("%s revision %s %s", i.Version, i.Revision, i.GoVersion)
}
