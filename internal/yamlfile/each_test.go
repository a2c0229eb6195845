package yamlfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestEach(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.yaml", "a.yaml", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	one := filepath.Join(t.TempDir(), "one.yml")
	if err := os.WriteFile(one, []byte("one.yml"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := Each([]string{dir, one}, "register map", func(name string, b []byte) error {
		if filepath.Base(name) != string(b) {
			t.Errorf("%s: contents %q", name, b)
		}
		got = append(got, filepath.Base(name))
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"a.yaml", "b.yaml", "one.yml"}) {
		t.Errorf("files %q, err %v; want a.yaml, b.yaml (in name order, no .txt), then the named file", got, err)
	}
	err = Each([]string{filepath.Join(dir, "missing.yaml")}, "register map", func(string, []byte) error { return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "register map: ") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestEachIn(t *testing.T) {
	fsys := fstest.MapFS{"maps/b.yaml": {Data: []byte("b")}, "maps/a.yaml": {Data: []byte("a")}}
	var got []string
	if err := EachIn(fsys, "maps", func(name string, b []byte) error {
		got = append(got, name+"="+string(b))
		return nil
	}); err != nil || !slices.Equal(got, []string{"maps/a.yaml=a", "maps/b.yaml=b"}) {
		t.Errorf("got %q, err %v; want both files in name order", got, err)
	}
	if err := EachIn(fsys, "none", func(string, []byte) error { return nil }); err == nil {
		t.Error("a missing directory gave no error")
	}
}
