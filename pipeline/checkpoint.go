package pipeline

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// The checkpoint keeps rule state and liveness across restarts (issue 22,
// docs/rules.md "Restarts"): one file, state.file, written every
// state.interval and at shutdown, atomically (a temporary file, fsync,
// rename). It holds two sections, each with its own checksum: the rule
// engine's state (rules.Snapshot) and each device's liveness
// (devices.Liveness.WriteState). A missing file is a first start; a damaged
// or unreadable one is logged and ignored (the alarm store still restores
// offline devices), never a reason not to start.

const checkpointMagic = "FWSTATE1"

// checkpoint writes and reads the state file.
type checkpoint struct {
	path   string
	every  time.Duration
	ledger *devices.Ledger
	pipe   *Pipeline
	live   *devices.Liveness
	log    *slog.Logger
	snap   *rules.Snapshot
	// wait bounds the wait for the snapshot's messages to be durable, and
	// final marks the last checkpoint, at shutdown (checkpoint_durable.go).
	wait  time.Duration
	final bool
}

// readCheckpoint reads the state file: the rule state is restored into eng
// and the liveness returned for devices.LivenessConfig.Restored. A missing
// file returns nothing and no error.
func readCheckpoint(path string, l *devices.Ledger, eng *rules.Engine, start int64, log *slog.Logger) []devices.Restored {
	if path == "" {
		return nil
	}
	// Read in a stream, not held whole: at a million devices the file is
	// some 200 MB (issue 18: start-up in under 1 GiB).
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var size int64
	if err == nil {
		defer f.Close()
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			size = fi.Size()
		}
	}
	if err == nil {
		magic := make([]byte, len(checkpointMagic))
		if _, rerr := io.ReadFull(f, magic); rerr != nil || string(magic) != checkpointMagic {
			err = errors.New("not a firewatch state file")
		}
	}
	var sections [2]io.Reader
	off := int64(len(checkpointMagic))
	for i := range sections {
		if err != nil {
			break
		}
		var head [8]byte
		if _, rerr := f.ReadAt(head[:], off); rerr != nil || binary.LittleEndian.Uint64(head[:]) > uint64(size-off-8) {
			err = errors.New("truncated")
			break
		}
		n := int64(binary.LittleEndian.Uint64(head[:]))
		sections[i] = bufio.NewReaderSize(io.NewSectionReader(f, off+8, n), 1<<16)
		off += 8 + n
	}
	if err != nil {
		log.Warn("state checkpoint not read: rule state and liveness start afresh", "file", path, "err", err)
		return nil
	}
	if n, err := eng.Restore(sections[0], l); err != nil {
		log.Warn("rule state not restored: open alarms clear by hand or when their rule fires again", "file", path, "err", err)
	} else {
		log.Info("rule state restored", "file", path, "devices", n)
	}
	restored, err := devices.ReadLivenessState(sections[1], l, start)
	if err != nil {
		log.Warn("liveness not restored: silences count from now", "file", path, "err", err)
		return nil
	}
	return restored
}

// write takes a snapshot of the rule state (holding the pipeline between
// two messages for the copy) and of liveness, and writes the state file.
func (c *checkpoint) write() error {
	c.pipe.mu.Lock()
	l := c.pipe.ledger // the registry snapshot in force (registry.go)
	c.snap = c.pipe.eng.Snapshot(c.snap, l)
	c.pipe.mu.Unlock()
	// Renamed into place only once the snapshot's messages are durable
	// (checkpoint_durable.go); waited for while the file is written.
	ready := c.barrier()
	// Written to the file in a stream, not built in memory first: at a
	// million devices the state is some 200 MB (issue 18: under 1 GiB).
	return writeSectionsAtomicWhen(c.path, func() error { return c.awaitDurable(ready) },
		func(w io.Writer) error { _, err := c.snap.WriteTo(w); return err },
		func(w io.Writer) error { return c.live.WriteState(w, l, time.Now().UnixMilli()) })
}

// writeSectionsAtomic replaces the file at path through a temporary file
// (a crash leaves the old file or the new one, never a mix),
// with checkpointMagic and each section's length (8 bytes, little endian)
// and bytes, the sections written straight to the file.
func writeSectionsAtomic(path string, sections ...func(io.Writer) error) error {
	return writeSectionsAtomicWhen(path, nil, sections...)
}

// writeSectionsAtomicWhen is writeSectionsAtomic that, if ready is not
// nil, calls it once the temporary file is written and fsynced, and
// replaces the file only if it returns nil.
func writeSectionsAtomicWhen(path string, ready func() error, sections ...func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = func() error {
		bw := bufio.NewWriterSize(f, 1<<16)
		off := int64(len(checkpointMagic))
		if _, err := bw.WriteString(checkpointMagic); err != nil {
			return err
		}
		for _, write := range sections {
			var head [8]byte
			if _, err := bw.Write(head[:]); err != nil {
				return err
			}
			cw := &countWriter{w: bw}
			if err := write(cw); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			binary.LittleEndian.PutUint64(head[:], uint64(cw.n))
			if _, err := f.WriteAt(head[:], off); err != nil {
				return err
			}
			off += 8 + cw.n
		}
		return bw.Flush()
	}()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && ready != nil {
		err = ready()
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// run writes the checkpoint every interval until ctx is done, and once more
// then (the caller stops the pipeline first).
func (c *checkpoint) run(ctx context.Context) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.final = true // Run writes the last checkpoint next
			return nil
		case <-t.C:
			if err := c.write(); err != nil {
				c.log.Warn("state checkpoint not written", "file", c.path, "err", err)
			}
		}
	}
}
