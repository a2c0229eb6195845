package spool_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/spool"
	"github.com/firewatch-iot/firewatch/spool/spooltest"
)

// TestCrashConsistency runs the randomized crash test for a few seeds.
// SPOOL_CRASH_SEED=n reruns one seed (printed on failure); SPOOL_CRASH_STEPS
// sets the steps per seed. `make fuzz` runs FuzzCrash for longer.
func TestCrashConsistency(t *testing.T) {
	steps := 1500
	if v, err := strconv.Atoi(os.Getenv("SPOOL_CRASH_STEPS")); err == nil {
		steps = v
	}
	if v, err := strconv.ParseUint(os.Getenv("SPOOL_CRASH_SEED"), 10, 64); err == nil {
		crashRun(t, v, steps)
		return
	}
	seeds := 32
	if testing.Short() {
		seeds = 4
	}
	base := uint64(time.Now().UnixNano())
	for i := range seeds {
		seed := base + uint64(i)
		if !t.Run(fmt.Sprint(seed), func(t *testing.T) { crashRun(t, seed, steps) }) {
			return
		}
	}
}

// FuzzCrash explores seeds of the crash test.
func FuzzCrash(f *testing.F) {
	for _, s := range []uint64{1, 2, 3, 42} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { crashRun(t, seed, 300) })
}

// entry is the model's view of one appended record.
type entry struct {
	id int
	// sure: Append returned nil (and, with SyncEvery > 0, a Sync after it
	// returned nil), so the record must survive a crash unless acked.
	sure bool
	// live: Append returned nil; without a crash the record must be
	// delivered.
	live bool
}

type crashModel struct {
	t       *testing.T
	seed    uint64
	rng     *rand.Rand
	fs      *spooltest.FS
	opt     spool.Options
	s       *spool.Spool
	q       []entry // records not known acknowledged, oldest first
	acked   int     // highest id committed
	ackSure int     // highest id whose Commit returned nil with AckEvery 0
	dropped map[int]bool
	next    int
	peeked  []int
	corrupt uint64 // corrupt regions counted by earlier instances
	flips   int    // bytes flipped that have not cost a record yet
	trace   []string
}

func (m *crashModel) logf(format string, args ...any) {
	m.trace = append(m.trace, fmt.Sprintf(format, args...))
	if len(m.trace) > 40 {
		m.trace = m.trace[1:]
	}
}

func (m *crashModel) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("seed %d (rerun: SPOOL_CRASH_SEED=%d go test -run TestCrashConsistency ./spool/): %s\nlast steps:\n  %s",
		m.seed, m.seed, fmt.Sprintf(format, args...), strings.Join(m.trace, "\n  "))
}

var quietLog = slog.New(slog.DiscardHandler)

func payload(id int, rng *rand.Rand) []byte {
	return []byte(fmt.Sprintf("r%08d.%s", id, strings.Repeat("x", rng.IntN(60))))
}

func idOf(rec []byte) int {
	if len(rec) < 9 || rec[0] != 'r' {
		return -1
	}
	n, err := strconv.Atoi(string(rec[1:9]))
	if err != nil {
		return -1
	}
	return n
}

func crashRun(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &crashModel{t: t, seed: seed, rng: rng, fs: spooltest.New(), dropped: map[int]bool{}, next: 1}
	m.opt = spool.Options{FS: m.fs, MaxBytes: 4096, SegmentBytes: 512,
		Keep:   func(r []byte) bool { return idOf(r)%7 == 0 },
		OnDrop: func(r []byte) { m.dropped[idOf(r)] = true },
		Logger: quietLog}
	if rng.IntN(2) == 0 {
		m.opt.SyncEvery = time.Hour // only explicit Syncs
	}
	if rng.IntN(3) == 0 {
		m.opt.AckEvery = time.Hour // acks written at Close only
	}
	m.logf("options sync_every=%v ack_every=%v", m.opt.SyncEvery, m.opt.AckEvery)
	m.reopen()
	for range steps {
		switch p := rng.IntN(100); {
		case p < 40:
			m.append()
		case p < 70:
			m.peekCommit()
		case p < 76:
			m.sync()
		case p < 84:
			m.inject()
		case p < 89:
			m.fs.Heal()
			m.logf("heal")
			m.appendMust()
		case p < 92:
			m.crash()
		case p < 95:
			// The power goes in the middle of what follows.
			n, tear := m.rng.IntN(12), m.rng.IntN(40)
			m.fs.DieAfter(n, tear)
			m.logf("die after %d ops (tear %d)", n, tear)
			for range 1 + m.rng.IntN(4) {
				if m.rng.IntN(2) == 0 {
					m.append()
				} else {
					m.peekCommit()
				}
			}
			m.crash()
		case p < 97:
			m.flip()
		default:
			err := m.s.Close()
			m.logf("close: %v", err)
			if err == nil {
				m.sync2sure()
			}
			m.collect()
			m.fs.Heal()
			m.reopen()
			m.recovered(false)
		}
	}
	// Once the fault is gone the spool works, without a restart and
	// after one: new records go through.
	m.fs.Heal()
	m.appendMust()
	m.crash()
	for range 20 {
		m.append()
	}
	got := m.drain()
	m.check(true, got)
	if n := m.s.Len(); n != len(got) {
		m.fatalf("Len = %d at the end, but %d records delivered", n, len(got))
	}
	m.s.Close()
}

func (m *crashModel) reopen() {
	m.t.Helper()
	s, err := spool.Open("/sp", m.opt)
	if err != nil {
		m.fatalf("Open with faults healed: %v", err)
	}
	m.s = s
	m.peeked = nil
}

// collect keeps the corrupt count of the instance about to be abandoned.
func (m *crashModel) collect() { m.corrupt += m.s.Stats().Corrupt }

func (m *crashModel) append() {
	n := 1 + m.rng.IntN(4)
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = payload(m.next+i, m.rng)
	}
	err := m.s.AppendBatch(recs)
	m.logf("append %d..%d: %v", m.next, m.next+n-1, err)
	for i := range n {
		// A failed batch may have put its first records in the spool.
		m.q = append(m.q, entry{id: m.next + i, sure: err == nil && m.opt.SyncEvery == 0, live: err == nil})
	}
	m.next += n
}

// appendMust appends with the faults healed: it must work, and, unless a
// flipped byte waits to be found, Len must match what a Peek returns.
func (m *crashModel) appendMust() {
	m.t.Helper()
	m.append()
	if !m.q[len(m.q)-1].live {
		m.fatalf("Append fails with the faults healed")
	}
	if m.flips == 0 {
		got := m.drain()
		m.check(true, got)
		if n := m.s.Len(); n != len(got) {
			m.fatalf("Len = %d, but Peek returns %d records", n, len(got))
		}
	}
}

func (m *crashModel) sync() {
	err := m.s.Sync()
	m.logf("sync: %v", err)
	if err == nil {
		m.sync2sure()
	}
}

func (m *crashModel) sync2sure() {
	for i := range m.q {
		if m.q[i].live {
			m.q[i].sure = true
		}
	}
}

func (m *crashModel) peekCommit() {
	recs, err := m.s.Peek(1+m.rng.IntN(20), 1<<20)
	if err != nil {
		m.logf("peek: %v", err)
		return
	}
	got := make([]int, len(recs))
	for i, r := range recs {
		got[i] = idOf(r)
	}
	m.logf("peek %v", got)
	m.check(false, got)
	if len(got) == 0 {
		return
	}
	k := m.rng.IntN(len(got) + 1)
	if k == 0 {
		return
	}
	err = m.s.Commit(k)
	m.logf("commit %d (to %d): %v", k, got[k-1], err)
	m.acked = max(m.acked, got[k-1])
	if err == nil && m.opt.AckEvery == 0 {
		m.ackSure = max(m.ackSure, got[k-1])
	}
	i := 0
	for i < len(m.q) && m.q[i].id <= m.acked {
		i++
	}
	m.q = m.q[i:]
}

// check compares records read from the spool with the model. Every id must
// be known and in order; an id the model requires (live without a crash,
// sure after one) may be missing only if dropped or, after a flipped byte,
// counted as corrupt. With all, got is everything the spool holds.
func (m *crashModel) check(all bool, got []int) {
	m.t.Helper()
	j := 0
	for gi, id := range got {
		if id <= m.ackSure {
			m.fatalf("record %d delivered again after its Commit returned nil (got %v)", id, got)
		}
		if id <= m.acked && (gi == 0 || got[gi-1] < id) && (len(m.q) == 0 || id < m.q[0].id) {
			continue // acknowledged, but the ack was not durable: delivered again
		}
		for j < len(m.q) && m.q[j].id != id {
			m.missing(m.q[j], got)
			j++
		}
		if j == len(m.q) {
			m.fatalf("record %d unknown or out of order (got %v)", id, got)
		}
		j++
	}
	if all {
		for ; j < len(m.q); j++ {
			m.missing(m.q[j], got)
		}
	}
}

func (m *crashModel) missing(e entry, got []int) {
	m.t.Helper()
	if !e.live || m.dropped[e.id] {
		return
	}
	if m.flips > 0 && m.corrupt+m.s.Stats().Corrupt > 0 {
		// Lost to a flipped byte, and counted: each flip costs the one
		// record it hits, at most.
		m.flips--
		m.dropped[e.id] = true
		m.logf("record %d lost to a flip", e.id)
		return
	}
	m.fatalf("record %d (sure=%v) missing (got %v)", e.id, e.sure, got)
}

// drain reads everything without committing.
func (m *crashModel) drain() []int {
	recs, err := m.s.Peek(1<<20, 1<<30)
	if err != nil {
		m.fatalf("Peek with faults healed: %v", err)
	}
	out := make([]int, len(recs))
	for i, r := range recs {
		out[i] = idOf(r)
	}
	return out
}

func (m *crashModel) inject() {
	ops := []spooltest.Op{spooltest.OpWrite, spooltest.OpWrite, spooltest.OpSync, spooltest.OpCreate,
		spooltest.OpRename, spooltest.OpRead, spooltest.OpTruncate, spooltest.OpRemove}
	f := spooltest.Fault{Op: ops[m.rng.IntN(len(ops))], Err: spooltest.ENOSPC, Tear: m.rng.IntN(40),
		After: m.rng.IntN(3), Times: 1 + m.rng.IntN(3)}
	if m.rng.IntN(2) == 0 {
		f.Err = spooltest.EIO
	}
	m.fs.Inject(f)
	m.logf("inject %+v", f)
}

// crash cuts the power, heals the faults and reopens: every record that
// was sure is still there, once, in order.
func (m *crashModel) crash() {
	m.collect()
	tail := spooltest.Tail(m.rng.IntN(3))
	m.fs.Crash(m.rng, tail)
	m.fs.Heal()
	m.logf("crash tail=%d", tail)
	m.reopen()
	m.recovered(true)
}

// recovered checks the spool after a reopen against the model.
// After a crash everything Open found is on disk (the power cut left only
// what was on disk); after a Close only what was sure before is.
func (m *crashModel) recovered(crashed bool) {
	// After a crash only sure records are required.
	for i := range m.q {
		m.q[i].live = m.q[i].sure
	}
	got := m.drain()
	m.logf("after crash: %v", got)
	m.check(true, got)
	if n := m.s.Len(); n != len(got) {
		m.fatalf("Len = %d after recovery, but %d records delivered", n, len(got))
	}
	// What Open found is now the truth: it is on disk.
	was := map[int]bool{}
	for _, e := range m.q {
		was[e.id] = e.sure
	}
	q := make([]entry, 0, len(got))
	for _, id := range got {
		q = append(q, entry{id: id, sure: crashed || was[id], live: true})
	}
	m.q = q
	m.acked = m.ackSure
	// The Peek above is not committed; a later Commit applies to the
	// next Peek.
}

func (m *crashModel) flip() {
	var segs []string
	for _, n := range m.fs.Files() {
		if strings.HasSuffix(n, ".seg") {
			segs = append(segs, n)
		}
	}
	if len(segs) < 2 {
		return
	}
	name := segs[m.rng.IntN(len(segs)-1)] // a sealed one
	size := m.fs.Size(name)
	if size <= 0 {
		return
	}
	off := m.rng.IntN(size)
	m.fs.Flip(name, off)
	m.flips++
	m.logf("flip %s at %d", name, off)
}
