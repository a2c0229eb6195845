package gateway

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"
)

// reopenDelay is the least time between attempts to reopen a failed port.
var reopenDelay = 2 * time.Second

// port is a serial port that reopens itself after an I/O error, as when a
// USB RS-485 adapter is unplugged and plugged back in. While it is closed,
// reads and writes fail at once: the poller counts misses, devices go
// offline, and come back when the port does.
type port struct {
	cfg  BusConfig
	log  *slog.Logger
	mu   sync.Mutex
	p    io.ReadWriteCloser
	last time.Time
}

var errPortDown = errors.New("serial port closed after an error; reopening")

func (s *port) get() (io.ReadWriteCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		return s.p, nil
	}
	if time.Since(s.last) < reopenDelay {
		return nil, errPortDown
	}
	s.last = time.Now()
	p, err := OpenPort(s.cfg)
	if err != nil {
		return nil, err
	}
	s.log.Info("serial port reopened", "port", s.cfg.Port)
	s.p = p
	return p, nil
}

func (s *port) fail(p io.ReadWriteCloser, err error) {
	if err == nil || errors.Is(err, io.EOF) {
		return // EOF is a read timeout on a serial port
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == p {
		s.log.Error("serial port failed; closing it", "port", s.cfg.Port, "err", err)
		p.Close()
		s.p = nil
		s.last = time.Now()
	}
}

func (s *port) Read(b []byte) (int, error) {
	p, err := s.get()
	if err != nil {
		return 0, err
	}
	n, err := p.Read(b)
	s.fail(p, err)
	return n, err
}

func (s *port) Write(b []byte) (int, error) {
	p, err := s.get()
	if err != nil {
		return 0, err
	}
	n, err := p.Write(b)
	s.fail(p, err)
	return n, err
}

func (s *port) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return nil
	}
	err := s.p.Close()
	s.p = nil
	return err
}
