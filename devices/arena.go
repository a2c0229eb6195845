package devices

import "unsafe"

// arenaChunk is the size of the blocks a ledger's strings are copied into.
const arenaChunk = 1 << 20

// arena copies strings into large blocks. A ledger's devices keep a
// million small strings (ids, addresses, secret hashes) that the reader —
// the YAML parser, the store's rows — allocated among its own garbage;
// kept there they pin the partly empty pages around them, some 40 % more
// resident memory than the strings need (issue 18). Copied together, the
// reader's pages are freed whole and the collector has a few hundred
// blocks to mark instead of a million strings. The blocks are never
// written again once a string is cut from them.
type arena struct {
	chunk int
	buf   []byte
}

// str returns a copy of s in the arena.
func (a *arena) str(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > a.chunk/8 {
		b := []byte(s)
		return unsafe.String(&b[0], len(b))
	}
	if cap(a.buf)-len(a.buf) < len(s) {
		a.buf = make([]byte, 0, a.chunk)
	}
	a.buf = append(a.buf, s...)
	return unsafe.String(&a.buf[len(a.buf)-len(s)], len(s))
}
