// Package layering holds the test that keeps firewatch's packages layered
// (docs/architecture.md): which package may not import which, written as
// data in layering_test.go. It has no code of its own.
package layering
