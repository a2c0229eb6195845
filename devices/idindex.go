package devices

import (
	"bytes"
	"hash/maphash"
	"maps"
	"slices"
	"unsafe"
)

// idInline is the longest id an idIndex slot holds itself; longer ids (up
// to 64 bytes) are looked up in a map.
const idInline = 24

// idIndex maps device ids to indexes for the hot path. It is an open
// addressing table with linear probing whose 32-byte slots hold the id
// itself, so that a lookup usually touches one cache line: a Go map of
// string keys touches its control word, its slot and the key's bytes
// elsewhere in memory, three cache misses per reading once tens of
// thousands of devices no longer fit in the cache (profile of make bench,
// docs/performance.md). It is read-only after newIDIndex.
type idIndex struct {
	slots []idSlot
	mask  uint64
	seed  maphash.Seed
	long  map[string]Index
	count int // filled slots
}

type idSlot struct {
	key [idInline]byte
	n   uint8 // id length; 0: empty
	_   [3]byte
	idx Index
}

func newIDIndex(ids []string) *idIndex {
	size := 16
	for size < 2*len(ids) {
		size <<= 1
	}
	x := &idIndex{slots: make([]idSlot, size), mask: uint64(size - 1), seed: maphash.MakeSeed()}
	for i, id := range ids {
		if len(id) > idInline || len(id) == 0 {
			if x.long == nil {
				x.long = map[string]Index{}
			}
			x.long[id] = Index(i)
			continue
		}
		j := maphash.String(x.seed, id) & x.mask
		for x.slots[j].n != 0 {
			j = (j + 1) & x.mask
		}
		s := &x.slots[j]
		copy(s.key[:], id)
		s.n, s.idx = uint8(len(id)), Index(i)
		x.count++
	}
	return x
}

func (x *idIndex) lookup(id []byte) (Index, bool) {
	if len(id) > idInline || len(id) == 0 {
		i, ok := x.long[string(id)]
		return i, ok
	}
	j := maphash.Bytes(x.seed, id) & x.mask
	for {
		s := &x.slots[j]
		if s.n == 0 {
			return 0, false
		}
		if int(s.n) == len(id) && bytes.Equal(s.key[:s.n], id) {
			return s.idx, true
		}
		j = (j + 1) & x.mask
	}
}

// lookupString is lookup for a string, without copying it: lookup only
// reads id.
func (x *idIndex) lookupString(id string) (Index, bool) {
	return x.lookup(unsafe.Slice(unsafe.StringData(id), len(id)))
}

// newIDIndexCap returns an empty index sized for n ids, to be filled with
// insert (Build: the duplicate check and the index are one table).
func newIDIndexCap(n int) *idIndex {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	return &idIndex{slots: make([]idSlot, size), mask: uint64(size - 1), seed: maphash.MakeSeed()}
}

// insert adds id → i unless id is there already, in which case it returns
// the index it has and false. The table must have room (full reports
// when it should grow).
func (x *idIndex) insert(id string, i Index) (Index, bool) {
	if len(id) > idInline || len(id) == 0 {
		if prev, ok := x.long[id]; ok {
			return prev, false
		}
		if x.long == nil {
			x.long = map[string]Index{}
		}
		x.long[id] = i
		return i, true
	}
	j := maphash.String(x.seed, id) & x.mask
	for {
		s := &x.slots[j]
		if s.n == 0 {
			copy(s.key[:], id)
			s.n, s.idx = uint8(len(id)), i
			x.count++
			return i, true
		}
		if int(s.n) == len(id) && string(s.key[:s.n]) == id {
			return s.idx, false
		}
		j = (j + 1) & x.mask
	}
}

// set maps id to i, adding or replacing (a removed device's id added again
// points at its new slot).
func (x *idIndex) set(id string, i Index) {
	if len(id) > idInline || len(id) == 0 {
		if x.long == nil {
			x.long = map[string]Index{}
		}
		x.long[id] = i
		return
	}
	j := maphash.String(x.seed, id) & x.mask
	for {
		s := &x.slots[j]
		if s.n == 0 {
			copy(s.key[:], id)
			s.n, s.idx = uint8(len(id)), i
			x.count++
			return
		}
		if int(s.n) == len(id) && string(s.key[:s.n]) == id {
			s.idx = i
			return
		}
		j = (j + 1) & x.mask
	}
}

// full reports whether adding n more ids would fill more than half the
// slots, past which linear probing slows down.
func (x *idIndex) full(n int) bool { return 2*(x.count+n) > len(x.slots) }

// clone returns a copy that set may change without touching x, which
// readers of an older ledger snapshot still use.
func (x *idIndex) clone() *idIndex {
	c := *x
	c.slots = slices.Clone(x.slots)
	c.long = maps.Clone(x.long)
	return &c
}
