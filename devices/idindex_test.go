package devices

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func testIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("el-4502%02d-%05d", i%100, i)
	}
	return ids
}

func TestIDIndex(t *testing.T) {
	ids := append(testIDs(5000), "a", strings.Repeat("x", idInline), strings.Repeat("y", idInline+1), strings.Repeat("z", 64))
	x := newIDIndex(ids)
	for i, id := range ids {
		if got, ok := x.lookup([]byte(id)); !ok || got != Index(i) {
			t.Fatalf("lookup(%q) = %d %v, want %d", id, got, ok, i)
		}
		if got, ok := x.lookupString(id); !ok || got != Index(i) {
			t.Fatalf("lookupString(%q) = %d %v, want %d", id, got, ok, i)
		}
	}
	for _, miss := range []string{"", "b", "el-450200-00000x", "el-450200-0000", strings.Repeat("x", idInline-1),
		strings.Repeat("y", idInline), strings.Repeat("z", 63), "el-450200-05000"} {
		if got, ok := x.lookup([]byte(miss)); ok {
			t.Errorf("lookup(%q) = %d, want a miss", miss, got)
		}
		if got, ok := x.lookupString(miss); ok {
			t.Errorf("lookupString(%q) = %d, want a miss", miss, got)
		}
	}
	if empty := newIDIndex(nil); func() bool { _, ok := empty.lookup([]byte("x")); return ok }() {
		t.Error("empty index found x")
	}
}

func FuzzIDIndex(f *testing.F) {
	ids := testIDs(300)
	x := newIDIndex(ids)
	byID := map[string]Index{}
	for i, id := range ids {
		byID[id] = Index(i)
	}
	f.Add([]byte("el-450207-00007"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, id []byte) {
		want, wok := byID[string(id)]
		got, ok := x.lookup(id)
		if ok != wok || got != want {
			t.Fatalf("lookup(%q) = %d %v, map says %d %v", id, got, ok, want, wok)
		}
	})
}

// BenchmarkLookup compares the index with a Go map over device counts of
// a county and a city, looking ids up in random order.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{20000, 300000} {
		ids := testIDs(n)
		keys := make([][]byte, 1<<16)
		for i := range keys {
			keys[i] = []byte(ids[rand.IntN(n)])
		}
		m := make(map[string]Index, n)
		for i, id := range ids {
			m[id] = Index(i)
		}
		x := newIDIndex(ids)
		b.Run(fmt.Sprintf("map/%d", n), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, ok := m[string(keys[i&(len(keys)-1)])]; !ok {
					b.Fatal("miss")
				}
			}
		})
		b.Run(fmt.Sprintf("index/%d", n), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, ok := x.lookup(keys[i&(len(keys)-1)]); !ok {
					b.Fatal("miss")
				}
			}
		})
	}
}
