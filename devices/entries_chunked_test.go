package devices

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// parseBoth reads b in batches (as a large ledger is) and as one document,
// and says whether the batches were used.
func parseBoth(t testing.TB, b []byte) (chunked, whole *parsed, werr error, used bool) {
	t.Helper()
	whole, werr = parseWhole("l.yaml", b, nil)
	chunked, used = parseChunked("l.yaml", b, nil)
	if werr == nil {
		sortProbs(whole)
	}
	if used {
		sortProbs(chunked)
	}
	return
}

func sortProbs(p *parsed) {
	p.probs = append([]Problem(nil), p.probs...)
	for i := 1; i < len(p.probs); i++ {
		for j := i; j > 0 && p.probs[j].Line < p.probs[j-1].Line; j-- {
			p.probs[j], p.probs[j-1] = p.probs[j-1], p.probs[j]
		}
	}
}

// bigLedger has 3 batches and a bit of devices, some with mistakes.
func bigLedger(withMistakes bool) []byte {
	var b strings.Builder
	b.WriteString("# big\nplaces:\n  \"450204\": 柳南区\nstations:\n  - {id: st-1, name: 一站, grids: [\"4502\"], endpoint: \"http://x/y\"}\n")
	b.WriteString("devices:   # every device\n\n  # the first\n")
	for i := range 3*chunkItems + 17 {
		switch {
		case withMistakes && i%97 == 5:
			fmt.Fprintf(&b, "  - {id: d%d, kind: smoke, grid: \"450204002003\", adress: x}\n", i) // unknown key
		case i%101 == 7:
			fmt.Fprintf(&b, "  - id: d%d\n    kind: electrical\n    grid: \"450204002003\"\n    rules:\n      electrical.residual_current: {above: %d}\n", i, 300+i)
		case withMistakes && i%89 == 3:
			fmt.Fprintf(&b, "  # a comment\n\n  - id: d%d\n    kind: hydrant\n    channels: x\n", i) // a type mistake
		case withMistakes && i%83 == 4:
			fmt.Fprintf(&b, "  - {id: d%d, kind: fog, grid: \"450204002003\"}\n", i) // a mistake Build finds
		default:
			fmt.Fprintf(&b, "  - id: d%d\n    kind: smoke\n    grid: \"450204002003\"\n    address: |\n      多行\n      地址 %d\n", i, i)
		}
	}
	b.WriteString("# after\ngateways:\n  - {id: gw-1}\nuitds:\n  - {address: \"010203040506\", device: nope}\n")
	return []byte(b.String())
}

// ParseLedger builds the devices as the batches come (no DeviceEntry for
// all of them at once): the same ledger, the same problems, as read whole.
func TestParseLedgerInBatches(t *testing.T) {
	was := chunkedFrom
	t.Cleanup(func() { chunkedFrom = was })
	for _, mistakes := range []bool{false, true} {
		text := bigLedger(mistakes)
		chunkedFrom = 1 << 30
		_, errw := ParseLedger("l.yaml", text)
		chunkedFrom = 0
		_, errc := ParseLedger("l.yaml", text)
		if fmt.Sprint(errw) != fmt.Sprint(errc) {
			t.Fatalf("problems differ:\n%v\n%v", errc, errw)
		}
		var lew, lec *LoadError
		if errors.As(errw, &lew) && errors.As(errc, &lec) && !reflect.DeepEqual(lew.Problems, lec.Problems) {
			t.Fatalf("problem locators differ:\n%+v\n%+v", lec.Problems, lew.Problems)
		}
		if mistakes {
			if errc == nil {
				t.Fatal("no problems found")
			}
			continue
		}
		t.Logf("no mistakes: %v", errw)
	}
	// A batch that cannot be read on its own after others were built: the
	// file is read whole, and the ledger is the whole read's.
	cross := strings.Replace(string(bigLedger(false)), "  - id: d0\n", "  - id: &first d0\n", 1)
	cross = strings.Replace(cross, "  - id: d700\n", "  - id: d700\n    model: *first\n", 1)
	chunkedFrom = 1 << 30
	_, errw := ParseLedger("l.yaml", []byte(cross))
	chunkedFrom = 0
	_, errc := ParseLedger("l.yaml", []byte(cross))
	if !strings.Contains(cross, "*first") || fmt.Sprint(errw) != fmt.Sprint(errc) {
		t.Fatalf("after a batch fails: %v, want %v", errc, errw)
	}
	// Without the bad uitd, a ledger.
	text := bigLedger(false)
	text = text[:strings.LastIndex(string(text), "uitds:")]
	chunkedFrom = 1 << 30
	lw, err := ParseLedger("l.yaml", text)
	if err != nil {
		t.Fatal(err)
	}
	chunkedFrom = 0
	lc, err := ParseLedger("l.yaml", text)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(lw.Entries(), lc.Entries()) || lc.Len() != 3*chunkItems+17 {
		t.Fatal("ledgers differ")
	}
	for i := range lw.Devices {
		for id, n := range lw.Devices[i].Rules {
			if lc.Devices[i].Rules[id].Line != n.Line {
				t.Errorf("%s override at line %d, want %d", lw.Devices[i].ID, lc.Devices[i].Rules[id].Line, n.Line)
			}
		}
	}
}

// A ledger read in batches is the same as read whole: entries, their lines,
// the problems of entries that cannot be read, the override nodes.
func TestChunkedParseSameAsWhole(t *testing.T) {
	var b strings.Builder
	b.WriteString("# big\nplaces:\n  \"450204\": 柳南区\nstations:\n  - {id: st-1, name: 一站, grids: [\"4502\"], endpoint: \"http://x/y\"}\n")
	b.WriteString("devices:   # every device\n\n  # the first\n")
	for i := range 3*chunkItems + 17 {
		switch {
		case i%97 == 5:
			fmt.Fprintf(&b, "  - {id: d%d, kind: smoke, grid: \"450204002003\", adress: x}\n", i) // unknown key
		case i%101 == 7:
			fmt.Fprintf(&b, "  - id: d%d\n    kind: electrical\n    grid: \"450204002003\"\n    rules:\n      electrical.residual_current: {above: %d}\n", i, 300+i)
		case i%89 == 3:
			fmt.Fprintf(&b, "  # a comment\n\n  - id: d%d\n    kind: hydrant\n    channels: x\n", i) // a type mistake
		default:
			fmt.Fprintf(&b, "  - id: d%d\n    kind: smoke\n    grid: \"450204002003\"\n    address: |\n      多行\n      地址 %d\n", i, i)
		}
	}
	b.WriteString("# after\ngateways:\n  - {id: gw-1}\n")
	text := []byte(b.String())
	c, w, err, used := parseBoth(t, text)
	if err != nil || !used {
		t.Fatalf("whole: %v; batches used: %v", err, used)
	}
	if !reflect.DeepEqual(c.e, w.e) || !reflect.DeepEqual(c.probs, w.probs) || !reflect.DeepEqual(c.pos, w.pos) {
		t.Fatalf("batches differ from the whole:\n%+v\n%+v", c.probs, w.probs)
	}
	if len(c.rules) != len(w.rules) {
		t.Fatalf("%d override sets, want %d", len(c.rules), len(w.rules))
	}
	for i, r := range w.rules {
		for id, n := range r {
			if c.rules[i][id].Line != n.Line || c.rules[i][id].Content[1].Value != n.Content[1].Value {
				t.Errorf("override %d %s at line %d, want %d", i, id, c.rules[i][id].Line, n.Line)
			}
		}
	}
	if len(w.probs) == 0 {
		t.Fatal("the test ledger has no problems to compare")
	}
}

// What the cut cannot be sure of is read whole.
func TestChunkedParseFallsBack(t *testing.T) {
	item := "  - {id: d1, kind: smoke, grid: \"450204002003\"}\n"
	for name, text := range map[string]string{
		"flow":           "devices: [{id: d1}]\n",
		"alias":          "x: &a smoke\ndevices:\n  - {id: d1, kind: *a}\n",
		"two documents":  "devices:\n" + item + "---\ndevices:\n" + item,
		"quoted cut":     "devices:\n  - {id: d1, address: \"a\n  - b\"}\n" + item,
		"no devices":     "places: {}\n",
		"devices twice":  "devices:\n" + item + "places: {}\ndevices:\n" + item,
		"bad indent":     "devices:\n" + item + " - x\n",
		"cross anchor":   "devices:\n  - &d {id: d1, kind: smoke}\n  - *d\n",
		"key under list": "devices:\n" + item + "  x: 1\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, w, werr, used := parseBoth(t, []byte(text))
			if !used {
				return
			}
			if werr != nil {
				t.Fatalf("batches read what the whole refuses: %v", werr)
			}
			if !reflect.DeepEqual(c.e, w.e) || !reflect.DeepEqual(c.probs, w.probs) {
				t.Fatalf("batches differ:\n%+v\n%+v", c.e, w.e)
			}
		})
	}
}

// FuzzChunkedParse: reading a ledger in batches gives what reading it
// whole gives, or declines.
func FuzzChunkedParse(f *testing.F) {
	b, err := os.ReadFile("testdata/ledger.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(registryLedger))
	f.Add([]byte(uitdLedger))
	f.Add([]byte("devices:\n- {id: a}\n- id: b\n  kind: smoke\nstations: []\n"))
	// Batches of two items, so that small inputs are cut too.
	was := chunkItems
	chunkItems = 2
	f.Cleanup(func() { chunkItems = was })
	f.Fuzz(func(t *testing.T, b []byte) {
		c, w, werr, used := parseBoth(t, b)
		if !used {
			return
		}
		if werr != nil {
			t.Fatalf("batches read what the whole refuses: %v", werr)
		}
		if !reflect.DeepEqual(c.e, w.e) || !reflect.DeepEqual(c.probs, w.probs) || !reflect.DeepEqual(c.pos, w.pos) {
			t.Fatalf("batches differ:\n%+v\n%+v\n%+v\n%+v", c.e, w.e, c.probs, w.probs)
		}
	})
}
