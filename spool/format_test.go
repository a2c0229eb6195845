package spool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFormatVersion: a spool records its format version; a spool written
// before the version file existed (the previous release's) is read as
// version 1 and replayed; a spool of a newer format is refused with what
// to do, and left as it was (issue 17: upgrade and rollback keep data).
func TestFormatVersion(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	for i := range 3 {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if b, err := os.ReadFile(filepath.Join(dir, formatFile)); err != nil || string(b) != "firewatch-spool 1\n" {
		t.Fatalf("FORMAT = %q, %v", b, err)
	}

	// The previous release wrote no FORMAT file.
	os.Remove(filepath.Join(dir, formatFile))
	s = open(t, dir, Options{})
	if got := drain(t, s, 10); len(got) != 3 || string(got[0]) != string(rec(0)) {
		t.Fatalf("an unversioned spool replayed %q, want its 3 records", got)
	}
	if err := s.Append(rec(3)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, formatFile)); err != nil {
		t.Fatalf("opening an unversioned spool did not record its version: %v", err)
	}

	// A rollback meets a newer format.
	if err := os.WriteFile(filepath.Join(dir, formatFile), []byte("firewatch-spool 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := listing(t, dir)
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("Open of a version 2 spool: %v, want a refusal", err)
	}
	if after := listing(t, dir); after != before {
		t.Errorf("the refused spool changed:\n%s\nto\n%s", before, after)
	}
	if err := os.WriteFile(filepath.Join(dir, formatFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("Open with a garbled FORMAT file succeeded")
	}
}

func listing(t *testing.T, dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + "\n" + string(data) + "\n")
	}
	return b.String()
}
