package devices

import "slices"

// Stream builds a ledger device by device, as Build does from whole
// Entries, so that a caller reading a million devices from a store need not
// hold them all as entries beside the ledger it builds (issue 18: start-up
// from the store in under 1 GiB). It reports the same problems as Build.
type Stream struct {
	b *builder
	n int
}

// NewStream starts a ledger named name from head's places, stations and
// gateways (its Devices and UITDs are ignored); devices is how many devices
// will follow (a hint: more or fewer are accepted).
func NewStream(name string, head *Entries, devices int) *Stream {
	b := newBuilder(name, devices)
	b.head(head, devices)
	return &Stream{b: b}
}

// Device adds the next device. The stream does not keep e: the caller may
// reuse it.
func (s *Stream) Device(e *DeviceEntry) {
	s.b.device(s.n, e, nil)
	s.n++
}

// Finish adds the UITDs and returns the ledger, or every problem as a
// *LoadError, as Build does.
func (s *Stream) Finish(uitds []UITDEntry) (*Ledger, error) {
	b := s.b
	b.tail(uitds)
	if len(b.probs) > 0 {
		if hasLines(b.probs) {
			slices.SortStableFunc(b.probs, func(x, y Problem) int { return x.Line - y.Line })
		}
		return nil, &LoadError{Problems: b.probs}
	}
	return b.l, nil
}
