package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestVersionAndHelp: --version prints the stamped version line and
// --help the man-style page with every configuration key, both on stdout
// with exit status 0, before any configuration is read.
func TestVersionAndHelp(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}, {"-config", "/nonexistent", "--version"}} {
		var out, errb bytes.Buffer
		if code := cli(args, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "firewatch "+version()+" (revision ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := cli([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help: exit %d: %s", code, errb.String())
	}
	for _, w := range []string{"NAME\n", "SYNOPSIS\n", "OPTIONS\n", "FILES\n", "-alarms.secret\n", "FIREWATCH_ALARMS_SECRET", "/var/lib/firewatch/alarms.db", "firewatch " + version()} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("--help lacks %q", w)
		}
	}
	c := defaults()
	for _, f := range fields(&c) {
		if !strings.Contains(out.String(), "-"+f.path+"\n") {
			t.Errorf("--help lacks key %s", f.path)
		}
	}
}
