package gcp

import (
	"regexp"
	"strings"
	"testing"
)

// The bounded patterns accept exactly what the {m,n} regexps they replace
// accept (those cost half a megabyte of heap at load), at every boundary.
func TestBoundedPatternsMatchTheRepetitionForms(t *testing.T) {
	cases := []struct {
		name string
		got  bounded
		want *regexp.Regexp
		seed []string
	}{
		{"secret", secretIDPattern, regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`), []string{"a", "A_-9", "é", "a b"}},
		{"project", projectPattern, regexp.MustCompile(`^[a-z0-9][a-z0-9.:-]{0,99}$`), []string{"p", "example.com:p-1", "-p", "P"}},
		{"location", locationPattern, regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`), []string{"us-central1", "1us", "l"}},
		{"version", versionPattern, regexp.MustCompile(`^(?:[1-9][0-9]{0,18}|[A-Za-z][A-Za-z0-9_-]{0,62})$`),
			[]string{"1", "latest", "0", "01", "v_1-a", "-v"}},
	}
	for _, c := range cases {
		inputs := append([]string{""}, c.seed...)
		for _, unit := range []string{"a", "1", "-"} {
			for _, n := range []int{1, 18, 19, 20, 62, 63, 64, 99, 100, 101, 254, 255, 256, 300} {
				inputs = append(inputs, strings.Repeat(unit, n), "a"+strings.Repeat(unit, n-1), "1"+strings.Repeat("0", n-1))
			}
		}
		for _, in := range inputs {
			if got, want := c.got.MatchString(in), c.want.MatchString(in); got != want {
				t.Errorf("%s: %q (len %d): got %v, want %v", c.name, in, len(in), got, want)
			}
		}
	}
}
