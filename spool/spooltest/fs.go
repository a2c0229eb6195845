package spooltest

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/firewatch-iot/firewatch/spool"
)

// Op is a kind of file operation.
type Op int

// Operations that can be made to fail.
const (
	OpWrite Op = iota
	OpSync
	OpRead
	OpCreate // OpenFile creating or truncating a file
	OpRename
	OpRemove
	OpTruncate
	nOps
)

// Errors the file system injects.
var (
	ENOSPC error = syscall.ENOSPC
	EIO    error = syscall.EIO
)

// Fault makes operations of one kind fail.
type Fault struct {
	Op  Op
	Err error
	// Tear, for OpWrite, writes that many bytes of the buffer before
	// failing (clamped to the buffer).
	Tear int
	// After is how many matching operations succeed before the fault
	// strikes.
	After int
	// Times is how many operations fail; 0 means until Heal.
	Times int
	// Match, when not empty, limits the fault to files whose name
	// contains it.
	Match string
}

// FS is an in-memory spool.FS with injectable faults. It is safe for
// concurrent use.
type FS struct {
	mu     sync.Mutex
	files  map[string]*file
	faults []*Fault
	// Injected counts the faults that struck; read it with Struck while
	// the spool runs.
	Injected int
	// dieAfter counts down the operations until the power goes (DieAfter);
	// -1 when off. dead: the power is gone, every operation fails.
	dieAfter, tear int
	dead           bool
}

type file struct {
	data    []byte
	durable []byte
}

// New returns an empty file system.
func New() *FS { return &FS{files: map[string]*file{}, dieAfter: -1} }

// ErrPowerCut is what every operation returns after DieAfter's count ran
// out, until Crash.
var ErrPowerCut = errors.New("spooltest: power cut")

// DieAfter lets n more operations of any kind succeed; the next one is
// torn (a write keeps tear bytes) and every one after fails, as if the
// power went at that point, until Crash restores the file system as the
// disk kept it. With it, a test crashes in the middle of an Append, a
// rotation or a compaction.
func (f *FS) DieAfter(n, tear int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dieAfter, f.tear = n, tear
}

// alive counts an operation down for DieAfter; it returns false (and how
// much of a write to keep) when the power is gone.
func (f *FS) alive() (bool, int) {
	if f.dead {
		return false, 0
	}
	if f.dieAfter < 0 {
		return true, 0
	}
	if f.dieAfter == 0 {
		f.dead = true
		return false, f.tear
	}
	f.dieAfter--
	return true, 0
}

var _ spool.FS = (*FS)(nil)

// Inject adds a fault.
func (f *FS) Inject(x Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &x)
}

// Struck returns how many faults struck so far.
func (f *FS) Struck() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Injected
}

// Heal removes every fault.
func (f *FS) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// strike returns the fault for op on name, if one applies, and uses it up.
func (f *FS) strike(op Op, name string) *Fault {
	if ok, tear := f.alive(); !ok {
		return &Fault{Op: op, Err: ErrPowerCut, Tear: tear}
	}
	for i, x := range f.faults {
		if x.Op != op || (x.Match != "" && !strings.Contains(name, x.Match)) {
			continue
		}
		if x.After > 0 {
			x.After--
			continue
		}
		f.Injected++
		if x.Times > 0 {
			x.Times--
			if x.Times == 0 {
				f.faults = slices.Delete(f.faults, i, i+1)
			}
		}
		return x
	}
	return nil
}

func pathErr(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

// OpenFile implements spool.FS.
func (f *FS) OpenFile(name string, flag int, _ os.FileMode) (spool.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name = filepath.Clean(name)
	fl, ok := f.files[name]
	if !ok || flag&os.O_TRUNC != 0 {
		if !ok && flag&os.O_CREATE == 0 {
			return nil, pathErr("open", name, fs.ErrNotExist)
		}
		if x := f.strike(OpCreate, name); x != nil {
			return nil, pathErr("open", name, x.Err)
		}
		if !ok {
			fl = &file{}
			f.files[name] = fl
		}
		fl.data = nil
	} else if ok, _ := f.alive(); !ok {
		return nil, pathErr("open", name, ErrPowerCut)
	}
	return &handle{fs: f, name: name, f: fl}, nil
}

// Remove implements spool.FS.
func (f *FS) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name = filepath.Clean(name)
	if x := f.strike(OpRemove, name); x != nil {
		return pathErr("remove", name, x.Err)
	}
	delete(f.files, name)
	return nil
}

// Rename implements spool.FS.
func (f *FS) Rename(oldpath, newpath string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldpath, newpath = filepath.Clean(oldpath), filepath.Clean(newpath)
	fl, ok := f.files[oldpath]
	if !ok {
		return pathErr("rename", oldpath, fs.ErrNotExist)
	}
	if x := f.strike(OpRename, newpath); x != nil {
		return pathErr("rename", newpath, x.Err)
	}
	delete(f.files, oldpath)
	f.files[newpath] = fl
	return nil
}

// ReadDir implements spool.FS.
func (f *FS) ReadDir(dir string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir = filepath.Clean(dir)
	if f.dead {
		return nil, pathErr("readdir", dir, ErrPowerCut)
	}
	var names []string
	for n := range f.files {
		if filepath.Dir(n) == dir {
			names = append(names, filepath.Base(n))
		}
	}
	slices.Sort(names)
	return names, nil
}

// MkdirAll implements spool.FS.
func (f *FS) MkdirAll(string, os.FileMode) error { return nil }

// SyncDir implements spool.FS.
func (f *FS) SyncDir(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if x := f.strike(OpSync, dir); x != nil {
		return pathErr("sync", dir, x.Err)
	}
	return nil
}

// Files returns the names of all files, sorted.
func (f *FS) Files() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Size returns the current size of a file, -1 if it does not exist.
func (f *FS) Size(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.files[filepath.Clean(name)]; ok {
		return len(fl.data)
	}
	return -1
}

// Flip inverts the bits of the byte at off of a file, in its current and
// its durable content.
func (f *FS) Flip(name string, off int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.files[filepath.Clean(name)]
	if fl == nil {
		return
	}
	if off < len(fl.data) {
		fl.data[off] ^= 0xFF
	}
	if off < len(fl.durable) {
		fl.durable[off] ^= 0xFF
	}
}

// Tail says what a power cut leaves of a file's unsynced writes.
type Tail int

// Kinds of tail after a power cut.
const (
	// TailCut keeps a random prefix of the unsynced bytes.
	TailCut Tail = iota
	// TailZero keeps a random prefix and zero-fills the rest up to the
	// file's size, as file systems that extend the size before the data
	// reaches the flash do.
	TailZero
	// TailGarbage keeps a random prefix and fills the rest with random
	// bytes.
	TailGarbage
)

// Crash simulates a power cut: every file keeps its durable content plus,
// by tail, part of what was written since its last Sync. Handles opened
// before the crash keep working on the old contents and no longer affect
// the file system. Faults stay until Heal.
func (f *FS) Crash(rng *rand.Rand, tail Tail) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, fl := range f.files {
		d := slices.Clone(fl.durable)
		if len(fl.data) > len(d) {
			k := rng.IntN(len(fl.data) - len(d) + 1)
			d = append(d, fl.data[len(d):len(d)+k]...)
			for len(d) < len(fl.data) && tail != TailCut {
				if tail == TailZero {
					d = append(d, 0)
				} else {
					d = append(d, byte(rng.Uint32()))
				}
			}
		} else if len(fl.data) < len(d) {
			// Truncated after the last sync: the cut may or may not have
			// reached the disk.
			if rng.IntN(2) == 0 {
				d = d[:len(fl.data)]
			}
		}
		f.files[name] = &file{data: d, durable: slices.Clone(d)}
	}
	f.dead, f.dieAfter = false, -1
}

// handle is an open file.
type handle struct {
	fs     *FS
	name   string
	f      *file
	closed bool
}

var errClosed = errors.New("file already closed")

func (h *handle) ReadAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return 0, errClosed
	}
	if x := h.fs.strike(OpRead, h.name); x != nil {
		return 0, pathErr("read", h.name, x.Err)
	}
	if off >= int64(len(h.f.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *handle) WriteAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return 0, errClosed
	}
	var err error
	n := len(p)
	if x := h.fs.strike(OpWrite, h.name); x != nil {
		n, err = min(max(x.Tear, 0), len(p)), pathErr("write", h.name, x.Err)
	}
	if end := off + int64(n); end > int64(len(h.f.data)) {
		h.f.data = append(h.f.data, make([]byte, end-int64(len(h.f.data)))...)
	}
	copy(h.f.data[off:], p[:n])
	return n, err
}

func (h *handle) Truncate(size int64) error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if x := h.fs.strike(OpTruncate, h.name); x != nil {
		return pathErr("truncate", h.name, x.Err)
	}
	if size <= int64(len(h.f.data)) {
		h.f.data = h.f.data[:size]
	} else {
		h.f.data = append(h.f.data, make([]byte, size-int64(len(h.f.data)))...)
	}
	return nil
}

func (h *handle) Sync() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return errClosed
	}
	if x := h.fs.strike(OpSync, h.name); x != nil {
		return pathErr("sync", h.name, x.Err)
	}
	h.f.durable = slices.Clone(h.f.data)
	return nil
}

func (h *handle) Close() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	h.closed = true
	return nil
}

func (h *handle) Size() (int64, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	return int64(len(h.f.data)), nil
}
