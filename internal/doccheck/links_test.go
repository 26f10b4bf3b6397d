package doccheck_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/internal/doccheck"
)

// TestDocLinks checks every relative link of README.md and docs/*.md: the
// file exists, and an anchor names a heading of it (GitHub's slugs), so that
// moving sections between files breaks no link.
func TestDocLinks(t *testing.T) {
	files, _ := filepath.Glob(doccheck.Path(t, "docs/*.md"))
	files = append(files, doccheck.Path(t, "README.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), path)
			}
			body, err := os.ReadFile(dest)
			if err != nil {
				if _, serr := os.Stat(dest); serr != nil {
					t.Errorf("%s links to %s, which does not exist", filepath.Base(file), target)
				}
				continue
			}
			if anchor != "" && !hasHeading(string(body), anchor) {
				t.Errorf("%s links to %s: no heading with that anchor", filepath.Base(file), target)
			}
		}
	}
}

// hasHeading reports whether markdown has a heading whose GitHub anchor is
// anchor.
func hasHeading(markdown, anchor string) bool {
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, l := range strings.Split(markdown, "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(l, "#")))
		if strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-") == anchor {
			return true
		}
	}
	return false
}
