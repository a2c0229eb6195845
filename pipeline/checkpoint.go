package pipeline

import (
	"bytes"
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
}

// readCheckpoint reads the state file: the rule state is restored into eng
// and the liveness returned for devices.LivenessConfig.Restored. A missing
// file returns nothing and no error.
func readCheckpoint(path string, l *devices.Ledger, eng *rules.Engine, start int64, log *slog.Logger) []devices.Restored {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil && (len(b) < len(checkpointMagic) || string(b[:len(checkpointMagic)]) != checkpointMagic) {
		err = errors.New("not a firewatch state file")
	}
	var sections [2][]byte
	rest := b[min(len(b), len(checkpointMagic)):]
	for i := range sections {
		if err != nil {
			break
		}
		if len(rest) < 8 || binary.LittleEndian.Uint64(rest) > uint64(len(rest)-8) {
			err = errors.New("truncated")
			break
		}
		n := binary.LittleEndian.Uint64(rest)
		sections[i], rest = rest[8:8+n], rest[8+n:]
	}
	if err != nil {
		log.Warn("state checkpoint not read: rule state and liveness start afresh", "file", path, "err", err)
		return nil
	}
	if n, err := eng.Restore(bytes.NewReader(sections[0]), l); err != nil {
		log.Warn("rule state not restored: open alarms clear by hand or when their rule fires again", "file", path, "err", err)
	} else {
		log.Info("rule state restored", "file", path, "devices", n)
	}
	restored, err := devices.ReadLivenessState(bytes.NewReader(sections[1]), l, start)
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
	var buf bytes.Buffer
	buf.WriteString(checkpointMagic)
	section := func(write func(w io.Writer) error) error {
		at := buf.Len()
		buf.Write(make([]byte, 8))
		if err := write(&buf); err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(buf.Bytes()[at:], uint64(buf.Len()-at-8))
		return nil
	}
	if err := section(func(w io.Writer) error { _, err := c.snap.WriteTo(w); return err }); err != nil {
		return err
	}
	if err := section(func(w io.Writer) error { return c.live.WriteState(w, l, time.Now().UnixMilli()) }); err != nil {
		return err
	}
	return writeFileAtomic(c.path, buf.Bytes())
}

// run writes the checkpoint every interval until ctx is done, and once more
// then (the caller stops the pipeline first).
func (c *checkpoint) run(ctx context.Context) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.write(); err != nil {
				c.log.Warn("state checkpoint not written", "file", c.path, "err", err)
			}
		}
	}
}

// writeFileAtomic replaces path with b: a crash leaves the old file or the
// new one, never a mix.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
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
