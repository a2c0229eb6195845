package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FormatVersion is the on-disk format of the segment files: records framed
// by an 8-byte header (length, CRC-32C) and the ack file. A change to either
// takes the next number, and Open of an older spool must still read it (or
// convert it), because an upgrade replays what the previous release spooled.
const FormatVersion = 1

// formatFile names the spool directory's format version. A spool written
// before the file existed is version 1.
const formatFile = "FORMAT"

// checkFormat refuses a spool written by a newer release (a rollback): its
// records would be misread. The spool is left as it is, for the newer
// release to replay. Otherwise it records FormatVersion; failing to write
// that record (a full disk) is not an error: a spool without it reads as
// version 1, this release's format, and Open must survive a full disk.
func checkFormat(fsys FS, dir string, log *slog.Logger) error {
	path := filepath.Join(dir, formatFile)
	b, err := readSmall(fsys, path)
	switch {
	case err == nil:
		f := strings.Fields(string(b))
		if len(f) != 2 || f[0] != "firewatch-spool" {
			return fmt.Errorf("spool %s: %s is not a spool format line (firewatch-spool N): %q", dir, formatFile, strings.TrimSpace(string(b)))
		}
		v, err := strconv.Atoi(f[1])
		if err != nil || v < 1 {
			return fmt.Errorf("spool %s: bad format version %q in %s", dir, f[1], formatFile)
		}
		if v > FormatVersion {
			return fmt.Errorf("spool %s: format version %d is newer than this binary's (%d): a newer release wrote it; "+
				"run that release again to replay it, or move the directory away (its records are kept)", dir, v, FormatVersion)
		}
		if v == FormatVersion {
			return nil
		}
		// Older versions convert here once there are any.
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("spool %s: %w", dir, err)
	}
	if err := writeFormat(fsys, path); err != nil {
		log.Warn("spool: cannot record the format version; will try again at the next open", "err", err)
	}
	return nil
}

// writeFormat writes the format line atomically (temporary file, fsync,
// rename).
func writeFormat(fsys FS, path string) error {
	tmp := path + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	line := []byte("firewatch-spool " + strconv.Itoa(FormatVersion) + "\n")
	if _, err := f.WriteAt(line, 0); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fsys.Rename(tmp, path)
}

// readSmall reads a small file whole through fsys.
func readSmall(fsys FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	if n > 4096 {
		return nil, fmt.Errorf("%s: %d bytes, not a format line", path, n)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}
