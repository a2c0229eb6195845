package devices

import (
	"bufio"
	"container/heap"
	"io"
)

// Cluster mode (issue 15): the liveness of a partition's devices moves with
// the partition. The owner writes the devices' words (WriteStateOf, the
// format of WriteState, read back by ReadLivenessState); the next owner
// sets them (Resume) so that each device's silence counts from its last
// sighting by the previous owner, not from the takeover.

// WriteStateOf is WriteState for devs only.
func (lv *Liveness) WriteStateOf(w io.Writer, l *Ledger, devs []Index, now int64) error {
	lv.growMu.RLock()
	defer lv.growMu.RUnlock()
	return lv.writeState(bufio.NewWriterSize(w, 4<<10), l, now, devs, false)
}

// ReadLivenessStateOf is ReadLivenessState for a partition's checkpoint
// (WriteStateOf): the devices it holds, by index in l, with their times as
// written (the time between writing and reading is silence: another
// instance was listening).
func ReadLivenessStateOf(r io.Reader, l *Ledger) (map[Index]Restored, error) {
	out := map[Index]Restored{}
	if err := readLivenessState(r, l, 0, func(j int, rs Restored) { out[Index(j)] = rs }); err != nil {
		return nil, err
	}
	return out, nil
}

// Resume sets device d's liveness to what the previous owner of its
// partition knew: last heard at lastSeen (seen: a sighting, not the start
// of tracking), offline (its offline alarm raised) or not. The sink is not
// told. A device not offline is raised at lastSeen plus its grace (at the
// next Tick when that has passed) unless it speaks first; Seen brings an
// offline one back as usual. It costs a heap entry until the device's
// deadline (checkResumed), nothing per tick before.
func (lv *Liveness) Resume(d Index, lastSeen int64, seen, offline bool, now int64) {
	if int(d) >= len(lv.words) || lastSeen <= 0 {
		return
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	w := uint64(lastSeen) & timeMask
	if seen {
		w |= seenBit
	}
	if offline {
		w |= offlineBit
	}
	old := lv.words[d].Swap(w)
	switch {
	case old&offlineBit != 0 && !offline:
		lv.offline.Add(-1)
	case old&offlineBit == 0 && offline:
		lv.offline.Add(1)
	}
	if !offline && lastSeen < now {
		// Its wheel entry may wait for a later deadline (this instance's
		// own view of the device): the resumed heap raises it at its
		// deadline from lastSeen unless it speaks first.
		heap.Push(&lv.resumed, resumedEntry{d: d, deadline: lastSeen + int64(lv.grace[d]), at: now})
	}
}

// resumedEntry is a device given its previous owner's last sighting
// (Resume): due at deadline unless it spoke at or after at.
type resumedEntry struct {
	d            Index
	deadline, at int64
}

// resumedHeap orders the resumed devices by deadline, so that a tick looks
// only at those due (a takeover may resume a million devices whose grace
// runs for days).
type resumedHeap []resumedEntry

func (h resumedHeap) Len() int           { return len(h) }
func (h resumedHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h resumedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *resumedHeap) Push(x any)        { *h = append(*h, x.(resumedEntry)) }
func (h *resumedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// checkResumed raises the resumed devices whose grace ended by now and
// that have not spoken since they were resumed. lv.mu is held.
func (lv *Liveness) checkResumed(now int64) int {
	raised := 0
	for len(lv.resumed) > 0 && lv.resumed[0].deadline <= now {
		r := heap.Pop(&lv.resumed).(resumedEntry)
		if lv.gone[uint32(r.d)] {
			continue
		}
		for {
			w := lv.words[r.d].Load()
			last := int64(w & timeMask)
			if w&offlineBit != 0 || last >= r.at {
				break // offline already, or it spoke: the wheel has it
			}
			if g := int64(lv.grace[r.d]); last+g > now {
				heap.Push(&lv.resumed, resumedEntry{d: r.d, deadline: last + g, at: r.at})
				break
			}
			if lv.words[r.d].CompareAndSwap(w, w|offlineBit) {
				lv.offline.Add(1)
				lv.sink.Offline(r.d, last, now)
				raised++
				break
			}
		}
	}
	return raised
}
