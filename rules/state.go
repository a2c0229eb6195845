package rules

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"

	"github.com/firewatch-iot/firewatch/devices"
)

// Rule state survives a restart through a checkpoint (docs/rules.md,
// "Restarts"): Snapshot copies the engine's state on the goroutine that
// calls Eval, WriteTo encodes the copy elsewhere, and Restore hands it to a
// new engine the way a reload does (Adopt): by device id and by rule id,
// metric and comparison, so that a checkpoint taken before the ledger or the
// rules changed still restores what it can.

// stateMagic heads a checkpoint; FWRULES3 added the moved clocks (eras)
// after the devices. A FWRULES2 checkpoint is read without them.
const (
	stateMagic   = "FWRULES3"
	stateMagicV2 = "FWRULES2"
)

// Snapshot is a copy of an engine's per-device state.
type Snapshot struct {
	e      *Engine // rules, layouts: immutable once compiled
	ids    []string
	dev    []devState
	states []uint32
	eras   map[devices.Index]era
	skews  map[devices.Index]int32
}

// Snapshot copies the engine's state into s (reusing its buffers) and
// returns it. It must run on the goroutine that calls Eval; it is a copy of
// two arrays, about 200 bytes per device.
func (e *Engine) Snapshot(s *Snapshot, l *devices.Ledger) *Snapshot {
	if s == nil {
		s = &Snapshot{}
	}
	s.e = e
	s.dev = append(s.dev[:0], e.dev...)
	s.states = append(s.states[:0], e.states...)
	s.eras = copyMap(s.eras, e.eras)
	s.skews = copyMap(s.skews, e.skews)
	if len(s.ids) != len(l.Devices) {
		s.ids = make([]string, len(l.Devices))
		for i := range l.Devices {
			s.ids[i] = l.Devices[i].ID
		}
	}
	return s
}

// WriteTo encodes the snapshot, with a CRC-32C at the end.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &crcWriter{w: bufio.NewWriterSize(w, 1<<16)}
	le := binary.LittleEndian
	var b []byte
	b = append(b, stateMagic...)
	b = le.AppendUint32(b, uint32(len(s.e.rules)))
	for i := range s.e.rules {
		c := &s.e.rules[i]
		b = appendString(b, c.rule.ID)
		b = appendString(b, c.rule.Kind.String())
		b = appendString(b, c.rule.Metric.String())
		b = append(b, byte(c.op), c.width)
	}
	b = le.AppendUint32(b, uint32(len(s.e.layouts)))
	for i := range s.e.layouts {
		lay := &s.e.layouts[i]
		b = le.AppendUint32(b, uint32(len(lay.places)))
		for _, p := range lay.places {
			b = le.AppendUint32(b, p.offset)
			b = le.AppendUint16(b, p.rule)
			b = append(b, p.channels)
		}
	}
	b = le.AppendUint32(b, uint32(len(s.dev)))
	cw.Write(b)
	for i := range s.dev {
		d := &s.dev[i]
		b = appendString(b[:0], s.ids[i])
		b = le.AppendUint64(b, uint64(d.baseMs()))
		b = le.AppendUint64(b, d.window())
		b = le.AppendUint32(b, d.last)
		b = le.AppendUint32(b, d.seq)
		b = le.AppendUint32(b, uint32(s.skews[devices.Index(i)]))
		b = le.AppendUint32(b, uint32(d.rskew))
		for _, g := range d.dig {
			b = le.AppendUint32(b, g)
		}
		b = le.AppendUint16(b, d.layout)
		b = le.AppendUint16(b, d.flags)
		size := s.e.layouts[d.layout].size
		b = le.AppendUint32(b, size)
		for _, v := range s.states[d.slot : d.slot+size] {
			b = le.AppendUint32(b, v)
		}
		cw.Write(b)
	}
	b = le.AppendUint32(b[:0], uint32(len(s.eras)))
	for _, i := range slices.Sorted(maps.Keys(s.eras)) {
		er := s.eras[i]
		b = appendString(b, s.ids[i])
		b = le.AppendUint64(b, uint64(er.mark))
		b = le.AppendUint64(b, uint64(er.shift))
		b = le.AppendUint32(b, er.seq)
		hs := byte(0)
		if er.hasSeq {
			hs = 1
		}
		b = append(b, hs)
	}
	cw.Write(b)
	sum := cw.crc
	cw.Write(le.AppendUint32(b[:0], sum))
	if cw.err == nil {
		cw.err = cw.w.(*bufio.Writer).Flush()
	}
	return cw.n, cw.err
}

// Restore reads a snapshot written by WriteTo and adopts its state into e
// (an engine over l that has evaluated nothing yet). Devices and rules the
// snapshot does not know start empty; those it knows and e does not are
// dropped. It returns how many devices were restored.
func (e *Engine) Restore(r io.Reader, l *devices.Ledger) (int, error) {
	old, got, err := e.decodeState(r, l, false)
	if err != nil {
		return 0, err
	}
	e.Adopt(old)
	return len(got), nil
}

// decodeState reads a snapshot written by WriteTo into an engine shaped
// like e (its devices, the snapshot's rules and layouts), and returns it
// with the indices (in l) of the devices the snapshot held. sparse: the
// engine's dev holds those devices only, dev[k] the state of got[k] (a
// partition's few devices of a large fleet).
func (e *Engine) decodeState(r io.Reader, l *devices.Ledger, sparse bool) (*Engine, []devices.Index, error) {
	cr := &crcReader{r: bufio.NewReaderSize(r, 1<<16)}
	magic := make([]byte, len(stateMagic))
	cr.full(magic)
	if cr.err == nil && string(magic) != stateMagic && string(magic) != stateMagicV2 {
		return nil, nil, errors.New("restore rule state: not a rule state checkpoint")
	}
	old := &Engine{}
	nr := cr.u32()
	if nr > 1<<20 {
		return nil, nil, fmt.Errorf("restore rule state: %d rules is not believable", nr)
	}
	for i := uint32(0); i < nr && cr.err == nil; i++ {
		id, kind, metric := cr.str(), cr.str(), cr.str()
		op, width := Op(cr.u8()), cr.u8()
		var m devices.Metric // zero, matching no rule, if unknown now
		if k, err := devices.ParseKind(kind); err == nil {
			m, _ = devices.MetricByName(k, metric)
		}
		old.rules = append(old.rules, compiled{rule: &Rule{ID: id, Metric: m}, op: op, width: width})
	}
	nl := cr.u32()
	if nl > 1<<16 {
		return nil, nil, fmt.Errorf("restore rule state: %d layouts is not believable", nl)
	}
	for i := uint32(0); i < nl && cr.err == nil; i++ {
		var lay layout
		np := cr.u32()
		if np > 1<<16 {
			return nil, nil, fmt.Errorf("restore rule state: %d rules in a layout is not believable", np)
		}
		for j := uint32(0); j < np && cr.err == nil; j++ {
			p := place{offset: cr.u32(), rule: uint16(cr.u16()), channels: cr.u8()}
			if int(p.rule) >= len(old.rules) {
				return nil, nil, errors.New("restore rule state: a layout names a rule that is not there")
			}
			lay.places = append(lay.places, p)
			lay.size = max(lay.size, p.offset+uint32(p.channels)*uint32(old.rules[p.rule].width))
		}
		old.layouts = append(old.layouts, lay)
	}
	empty := uint16(len(old.layouts))
	old.layouts = append(old.layouts, layout{})
	if !sparse {
		old.dev = make([]devState, len(e.dev))
		for i := range old.dev {
			old.dev[i].layout = empty
		}
	}
	nd := cr.u32()
	var got []devices.Index
	for i := uint32(0); i < nd && cr.err == nil; i++ {
		id := cr.str()
		var d devState
		base := int64(cr.u64())
		d.setWindow(cr.u64())
		d.last, d.seq = cr.u32(), cr.u32()
		skew := int32(cr.u32())
		d.rskew = int32(cr.u32())
		for k := range d.dig {
			d.dig[k] = cr.u32()
		}
		d.layout, d.flags = uint16(cr.u16()), uint16(cr.u16())
		size := cr.u32()
		if cr.err != nil {
			break
		}
		if int(d.layout) >= len(old.layouts)-1 || size != old.layouts[d.layout].size {
			return nil, nil, fmt.Errorf("restore rule state: device %q has a state of the wrong size", id)
		}
		d.slot = uint32(len(old.states))
		for k := uint32(0); k < size; k++ {
			old.states = append(old.states, cr.u32())
		}
		// The base in the file is in ms; here it is in coarser units,
		// and the times held count from it rounded down.
		old.moveBase(&d, base, base)
		j := int(i) // the same ledger: the same order
		if j >= len(l.Devices) || l.Devices[j].ID != id {
			dv, ok := l.LookupID(id)
			if !ok || int(dv.Index) >= len(e.dev) {
				continue
			}
			j = int(dv.Index)
		}
		if sparse {
			old.dev = append(old.dev, d)
		} else {
			old.dev[j] = d
		}
		if skew != 0 {
			setIn(&old.skews, devices.Index(j), skew)
		}
		got = append(got, devices.Index(j))
	}
	if string(magic) == stateMagic {
		ne := cr.u32()
		for i := uint32(0); i < ne && cr.err == nil; i++ {
			id := cr.str()
			er := era{mark: int64(cr.u64()), shift: int64(cr.u64()), seq: cr.u32(), hasSeq: cr.u8() != 0}
			if dv, ok := l.LookupID(id); ok && int(dv.Index) < len(e.dev) && cr.err == nil {
				setIn(&old.eras, dv.Index, er)
			}
		}
	}
	sum := cr.crc
	if got := cr.u32(); cr.err == nil && got != sum {
		return nil, nil, errors.New("restore rule state: checksum mismatch")
	}
	if cr.err != nil {
		return nil, nil, fmt.Errorf("restore rule state: %w", cr.err)
	}
	return old, got, nil
}

// copyMap copies src into dst (cleared, or made if nil and src is not
// empty).
func copyMap[V any](dst, src map[devices.Index]V) map[devices.Index]V {
	clear(dst)
	for k, v := range src {
		if dst == nil {
			dst = make(map[devices.Index]V, len(src))
		}
		dst[k] = v
	}
	return dst
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type crcWriter struct {
	w   io.Writer
	crc uint32
	n   int64
	err error
}

func (c *crcWriter) Write(b []byte) {
	if c.err != nil {
		return
	}
	c.crc = crc32.Update(c.crc, castagnoli, b)
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

type crcReader struct {
	r   *bufio.Reader
	crc uint32
	buf [8]byte
	err error
}

func (c *crcReader) full(b []byte) {
	if c.err != nil {
		return
	}
	if _, err := io.ReadFull(c.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		c.err = err
		return
	}
	c.crc = crc32.Update(c.crc, castagnoli, b)
}

func (c *crcReader) u8() uint8   { c.full(c.buf[:1]); return c.buf[0] }
func (c *crcReader) u16() uint16 { c.full(c.buf[:2]); return binary.LittleEndian.Uint16(c.buf[:2]) }
func (c *crcReader) u32() uint32 { c.full(c.buf[:4]); return binary.LittleEndian.Uint32(c.buf[:4]) }
func (c *crcReader) u64() uint64 { c.full(c.buf[:8]); return binary.LittleEndian.Uint64(c.buf[:8]) }

func (c *crcReader) str() string {
	n := c.u16()
	if c.err != nil {
		return ""
	}
	b := make([]byte, n)
	c.full(b)
	return string(b)
}
