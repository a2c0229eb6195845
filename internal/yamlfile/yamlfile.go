// Package yamlfile decodes YAML configuration strictly (a misspelt key is an
// error) while keeping the line numbers that error messages need.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Decode decodes b into v, rejecting unknown keys.
func Decode(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err != nil && err.Error() == "EOF" {
		return nil // an empty file is an empty document
	}
	return err
}

// DecodeNode decodes one node (an entry of a list) into v, rejecting unknown
// keys. The message carries no line: callers report the node's own Line.
func DecodeNode(n *yaml.Node, v any) error {
	// yaml.v3 applies KnownFields only through a Decoder, so the node is
	// re-encoded; line numbers inside that copy mean nothing to the user.
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	if err := Decode(b, v); err != nil {
		return errors.New(stripLine(err.Error()))
	}
	return nil
}

// Line extracts the line number yaml.v3 puts in its messages, or 0.
func Line(err error) int {
	var line int
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		fmt.Sscanf(s[i+5:], "%d", &line)
	}
	return line
}

// Reason is err's message without yaml.v3's prefixes, its line (callers
// report it with Line) and Go type names.
func Reason(err error) string { return stripLine(err.Error()) }

func stripLine(s string) string {
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n  ")
	if i := strings.Index(s, ": "); strings.HasPrefix(s, "line ") && i > 0 {
		s = s[i+2:]
	}
	if i := strings.Index(s, " in type "); i > 0 {
		s = s[:i]
	}
	return s
}

// Each is how a configuration names YAML files: each path is a file, or a
// directory whose *.yaml files are taken in name order (firegate's register
// maps, the NB-IoT product codecs).
//
// Each calls fn with the name and contents of every file of paths, in
// order, and stops at the first error: fn's as it is, a read error after
// what ("register map: open …: no such file or directory").
func Each(paths []string, what string, fn func(name string, b []byte) error) error {
	for _, p := range paths {
		files := []string{p}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			files, _ = filepath.Glob(filepath.Join(p, "*.yaml")) // the pattern is valid
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if err := fn(f, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// EachIn calls fn with the name ("dir/file.yaml") and contents of every
// file in dir of fsys (an embedded set of shipped files), in name order.
func EachIn(fsys fs.FS, dir string, fn func(name string, b []byte) error) error {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := dir + "/" + e.Name()
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		if err := fn(name, b); err != nil {
			return err
		}
	}
	return nil
}
