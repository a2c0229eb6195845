package gateway

import (
	"errors"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"
)

type fakePort struct {
	failing bool
	closed  bool
}

func (f *fakePort) Read(b []byte) (int, error) {
	if f.failing {
		return 0, syscall.EIO
	}
	return 0, io.EOF // a read timeout
}
func (f *fakePort) Write(b []byte) (int, error) { return len(b), nil }
func (f *fakePort) Close() error                { f.closed = true; return nil }

// TestPortReopens: an I/O error closes the port; it is reopened after
// reopenDelay; a read timeout (EOF) is not an error.
func TestPortReopens(t *testing.T) {
	old, oldDelay := OpenPort, reopenDelay
	t.Cleanup(func() { OpenPort, reopenDelay = old, oldDelay })
	reopenDelay = 50 * time.Millisecond
	first := &fakePort{}
	var opened []*fakePort
	OpenPort = func(BusConfig) (io.ReadWriteCloser, error) {
		p := &fakePort{}
		opened = append(opened, p)
		return p, nil
	}
	p := &port{cfg: BusConfig{Port: "/dev/fake"}, log: slog.New(slog.DiscardHandler), p: first}
	buf := make([]byte, 8)
	if _, err := p.Read(buf); !errors.Is(err, io.EOF) || first.closed {
		t.Fatalf("a read timeout closed the port: %v", err)
	}
	first.failing = true
	if _, err := p.Read(buf); !errors.Is(err, syscall.EIO) || !first.closed {
		t.Fatalf("EIO: %v, closed %v", err, first.closed)
	}
	if _, err := p.Write(buf); !errors.Is(err, errPortDown) {
		t.Fatalf("write right after the failure: %v, want errPortDown", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(opened) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("port not reopened")
		}
		p.Write(buf)
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := p.Write(buf); err != nil {
		t.Fatalf("write after reopening: %v", err)
	}
}
