package devices

import (
	"bytes"
	"runtime"
	"sync/atomic"

	"github.com/firewatch-iot/firewatch/internal/yamlfile"
	"gopkg.in/yaml.v3"
)

// A large ledger's devices are read in batches rather than as one YAML
// tree: yaml.v3 builds the whole document's node tree before decoding it,
// some 5 KB per device, 7 GB for a million (issue 18). The devices section
// is cut, by its lines, into batches of items that are parsed (by as many
// goroutines as there are cores) and decoded one batch at a time; the rest
// of the file is parsed with the section blanked out, so that every line
// keeps its number. Anything the cut cannot be sure of — no block sequence
// under a top-level `devices:` key, several documents, an item that does not
// parse on its own (an alias to an anchor elsewhere, a quoted text running
// over a cut) — and the whole file is read the ordinary way, which reports
// real mistakes as it always did.

// chunkedFrom is the file size from which the devices are read in batches.
var chunkedFrom = 1 << 20

// chunkItems is the number of device items per batch (a variable for the tests).
var chunkItems = 512

// deviceSection finds the top-level devices section of a ledger: the byte
// offsets of its key's line, of its first item line and of the end of its last line, and the
// start offset of each item. ok is false when the section is not a plain
// block sequence the cut can be sure of.
func deviceSection(b []byte) (keyAt, start, end int, items []int, ok bool) {
	key := -1 // offset of the line after "devices:"
	indent := -1
	for off := 0; off < len(b); {
		nl := bytes.IndexByte(b[off:], '\n')
		next := len(b)
		if nl >= 0 {
			next = off + nl + 1
		}
		line := b[off:next]
		content := bytes.TrimRight(line, "\r\n")
		trimmed := bytes.TrimLeft(content, " ")
		blank := len(trimmed) == 0 || trimmed[0] == '#'
		ind := len(content) - len(trimmed)
		switch {
		case bytes.HasPrefix(content, []byte("---")) || bytes.HasPrefix(content, []byte("...")) || bytes.HasPrefix(content, []byte("%")):
			return 0, 0, 0, nil, false // several documents, directives
		case key < 0:
			if ind == 0 && bytes.HasPrefix(content, []byte("devices:")) {
				after := content[len("devices:"):]
				rest := bytes.TrimLeft(after, " ")
				if len(rest) > 0 && (rest[0] != '#' || len(after) == len(rest)) {
					return 0, 0, 0, nil, false // flow sequence or alias on the key's line
				}
				key, start, keyAt = next, next, off
			}
		case end > 0:
			if ind == 0 && !blank && bytes.HasPrefix(content, []byte("devices:")) {
				return 0, 0, 0, nil, false // a second devices key: yaml.v3 refuses it
			}
		case blank:
		case indent < 0:
			if trimmed[0] != '-' || (len(trimmed) > 1 && trimmed[1] != ' ') {
				if ind == 0 {
					end = off // an empty section, then the next key
					continue
				}
				return 0, 0, 0, nil, false
			}
			indent = ind
			start = off
			items = append(items, off)
		case ind == indent && trimmed[0] == '-' && (len(trimmed) == 1 || trimmed[1] == ' '):
			items = append(items, off)
		case ind <= indent:
			if ind != 0 {
				return 0, 0, 0, nil, false
			}
			end = off
		}
		off = next
	}
	if key < 0 || len(items) == 0 {
		return 0, 0, 0, nil, false
	}
	if end == 0 {
		end = len(b)
	}
	// Trailing blank and comment lines belong to the rest.
	return keyAt, start, end, items, true
}

// parseChunked reads a ledger with its devices in batches, or returns
// false to have it read the ordinary way.
func parseChunked(name string, b []byte, sink deviceSink) (*parsed, bool) {
	keyAt, start, end, items, ok := deviceSection(b)
	if !ok {
		return nil, false
	}
	// The rest: the section's lines blanked, so that lines keep their numbers.
	rest := make([]byte, 0, len(b)-(end-start)+bytes.Count(b[start:end], []byte{'\n'}))
	rest = append(rest, b[:start]...)
	rest = append(rest, bytes.Repeat([]byte{'\n'}, bytes.Count(b[start:end], []byte{'\n'}))...)
	rest = append(rest, b[end:]...)
	p, err := parseWhole(name, rest, nil)
	if err != nil || len(p.e.Devices) > 0 || len(p.probs) > 0 && hasSection(p.probs, "devices") {
		return nil, false
	}
	firstLine := 1 + bytes.Count(b[:start], []byte{'\n'})
	// The key the lines showed must be the document's: its top-level
	// devices key, on the line before the section, with no value left.
	var top yaml.Node
	if yaml.Unmarshal(rest, &top) != nil || len(top.Content) != 1 || top.Content[0].Kind != yaml.MappingNode {
		return nil, false
	}
	found := false
	for m, i := top.Content[0], 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Value == "devices" {
			found = k.Line == 1+bytes.Count(b[:keyAt], []byte{'\n'}) && k.Column == 1 && k.Kind == yaml.ScalarNode && k.Tag == "!!str" &&
				k.Style == 0 && v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == ""
		}
	}
	if !found {
		return nil, false
	}

	type batch struct {
		from, to int // item positions
		line     int // the first item's line
		devs     []DeviceEntry
		rules    map[int]map[string]yaml.Node // by position within devs
		pos      []int                        // item position of each of devs
		probs    []Problem
		failed   bool
		done     chan struct{}
	}
	var batches []*batch
	line := firstLine
	for i := 0; i < len(items); i += chunkItems {
		to := min(i+chunkItems, len(items))
		bt := &batch{from: i, to: to, line: line, done: make(chan struct{})}
		batches = append(batches, bt)
		bEnd := end
		if to < len(items) {
			bEnd = items[to]
		}
		line += bytes.Count(b[items[i]:bEnd], []byte{'\n'})
	}
	work := func(bt *batch) {
		bEnd := end
		if bt.to < len(items) {
			bEnd = items[bt.to]
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(b[items[bt.from]:bEnd], &doc); err != nil || doc.Kind != yaml.DocumentNode ||
			len(doc.Content) != 1 || doc.Content[0].Kind != yaml.SequenceNode || len(doc.Content[0].Content) != bt.to-bt.from {
			bt.failed = true
			return
		}
		shiftLines(doc.Content[0], bt.line-1)
		for k, n := range doc.Content[0].Content {
			e, rules, err := decodeDevice(n)
			if err != nil {
				bt.probs = append(bt.probs, Problem{File: name, Line: n.Line, Reason: "device: " + yamlfile.Reason(err),
					Section: "devices", Index: bt.from + k, ID: e.ID})
				continue
			}
			if rules != nil {
				if bt.rules == nil {
					bt.rules = map[int]map[string]yaml.Node{}
				}
				bt.rules[len(bt.devs)] = rules
			}
			bt.pos = append(bt.pos, bt.from+k)
			bt.devs = append(bt.devs, e)
		}
	}
	// Batches are parsed by the workers, at most window ahead of the
	// one taken, and taken in file order.
	workers := max(1, runtime.GOMAXPROCS(0))
	window := make(chan struct{}, 2*workers)
	jobs := make(chan *batch)
	var stop atomic.Bool
	go func() {
		for _, bt := range batches {
			window <- struct{}{}
			jobs <- bt
		}
		close(jobs)
	}()
	for range workers {
		go func() {
			for bt := range jobs {
				if stop.Load() {
					bt.failed = true
				} else {
					work(bt)
				}
				close(bt.done)
			}
		}()
	}
	delete(p.pos, "devices")
	if sink != nil {
		sink.head(p.e, len(items))
	} else {
		p.e.Devices = make([]DeviceEntry, 0, len(items))
	}
	var devProbs []Problem
	failed := false
	for _, bt := range batches {
		<-bt.done
		<-window
		if failed = failed || bt.failed; failed {
			stop.Store(true) // the rest are skipped; the file is read whole
			continue
		}
		for k := range bt.devs {
			p.add(sink, bt.pos[k], &bt.devs[k], bt.rules[k])
		}
		devProbs = append(devProbs, bt.probs...)
		bt.devs, bt.rules = nil, nil
	}
	if failed {
		return nil, false
	}
	p.probs = append(p.probs, devProbs...)
	return p, true
}

func hasSection(ps []Problem, section string) bool {
	for _, p := range ps {
		if p.Section == section {
			return true
		}
	}
	return false
}

// shiftLines adds d to the line of n and of every node under it.
func shiftLines(n *yaml.Node, d int) {
	n.Line += d
	for _, c := range n.Content {
		shiftLines(c, d)
	}
}
