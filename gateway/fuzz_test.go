package gateway

import (
	"math/rand/v2"
	"testing"
)

// FuzzParseMap feeds arbitrary register maps to the parser: it may not
// panic, and every point of a map it accepts decodes any response data of
// its block's size (sentinels, masks, word orders) without panicking.
func FuzzParseMap(f *testing.F) {
	entries, _ := shipped.ReadDir("maps")
	for _, e := range entries {
		b, _ := shipped.ReadFile("maps/" + e.Name())
		f.Add(b)
	}
	f.Add([]byte("model: S\nkind: hydrant\nregisters:\n  - {metric: tilt, function: 3, address: 1, type: uint16, unit: event, mask: 0x0001, sentinel: [0xFFFF]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMap("fuzz.yaml", b)
		if err != nil {
			return
		}
		rng := rand.New(rand.NewPCG(uint64(len(b)), 1))
		for bi := range m.Blocks {
			blk := &m.Blocks[bi]
			n := 2 * int(blk.Count)
			if blk.Function <= 2 {
				n = (int(blk.Count) + 7) / 8
			}
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			for _, pi := range blk.Points {
				m.Points[pi].Decode(blk, data)
			}
		}
		for _, c := range m.Commands {
			for ch := -1; ch <= 20; ch++ {
				c.Target(ch)
			}
		}
	})
}
