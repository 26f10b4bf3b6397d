package failpoint

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	got, err := Parse(" checkout/lock-held=4*sleep(3s) ; other=sleep(150ms);checkout/batch-commit=2*error()")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Term{
		"checkout/lock-held":    {Count: 4, Sleep: 3 * time.Second},
		"other":                 {Count: -1, Sleep: 150 * time.Millisecond},
		"checkout/batch-commit": {Count: 2, Fail: true},
	}
	if len(got) != len(want) {
		t.Fatalf("Parse: %v, want %v", got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %+v, want %+v", name, got[name], w)
		}
	}
	if terms, err := Parse(""); err != nil || len(terms) != 0 {
		t.Errorf("Parse(\"\") = %v, %v; want nothing", terms, err)
	}
}

func TestParseRejects(t *testing.T) {
	for spec, msg := range map[string]string{
		"noequals":                "want NAME=",
		"=sleep(1s)":              "want NAME=",
		"a=panic()":               "want sleep(DURATION)",
		"a=sleep(1s":              "want sleep(DURATION)",
		"a=error(1s)":             "want sleep(DURATION) or error()",
		"a=sleep(soon)":           "positive duration",
		"a=sleep(-1s)":            "positive duration",
		"a=0*sleep(1s)":           "positive integer",
		"a=x*sleep(1s)":           "positive integer",
		"a=sleep(1s);a=sleep(2s)": "set twice",
	} {
		if _, err := Parse(spec); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Parse(%q): %v, want an error with %q", spec, err, msg)
		}
	}
}
