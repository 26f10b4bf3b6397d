package orderd

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeFirstScreen keeps the README's promise to a newcomer: within its
// first 30 lines, the demo, orderd on its embedded default, and the test
// command.
func TestReadmeFirstScreen(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	first := strings.Join(lines[:min(30, len(lines))], "\n")
	for _, want := range []string{"go run ./cmd/orderbench demo", "go run ./cmd/orderd ", "./scripts/test.sh"} {
		if !strings.Contains(first, want) {
			t.Errorf("the README's first 30 lines lack %q", want)
		}
	}
}

// TestDocLinks checks every relative link of README.md and docs/*.md: the
// file exists, and an anchor names a heading of it (GitHub's slugs), so that
// moving sections between files breaks no link.
func TestDocLinks(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
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
