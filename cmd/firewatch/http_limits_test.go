package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPSlowClients: slow and idle clients cannot hold the HTTP server's
// connections. A client trickling its headers is cut off after the read
// timeout, an idle keep-alive connection after the idle timeout, and at
// most max_connections are open: a further client is served once the
// server has dropped a slow one.
func TestHTTPSlowClients(t *testing.T) {
	rcv := newReceiver(t)
	s, _, _ := embeddedService(t, rcv, func(c *Config) {
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout, c.HTTP.IdleTimeout = time.Second, 2*time.Second, time.Second
		c.HTTP.MaxConnections = 3
	})
	addr := s.httpLn.Addr().String()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedBy waits until the server closes c (EOF or reset), at most d.
	closedBy := func(c net.Conn, d time.Duration) error {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("still open after %v", d)
		}
		return nil
	}

	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err := closedBy(c, 5*time.Second); err != nil {
			t.Errorf("idle connection: %v", err)
		}
	})

	t.Run("trickled headers", func(t *testing.T) {
		c := dial()
		done := make(chan error, 1)
		go func() {
			if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
				done <- nil
				return
			}
			for i := 0; ; i++ {
				time.Sleep(100 * time.Millisecond) // the slow client's pace, not synchronisation
				if _, err := fmt.Fprintf(c, "X-%d: y\r\n", i); err != nil {
					done <- nil // the server closed the connection
					return
				}
				if i > 100 {
					done <- errors.New("still accepting header lines after 10 s")
					return
				}
			}
		}()
		if err := closedBy(c, 5*time.Second); err != nil {
			t.Errorf("trickling client: %v", err)
		}
		c.Close()
		<-done
	})

	t.Run("connection cap", func(t *testing.T) {
		silent := []net.Conn{dial(), dial(), dial()}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// Served only once a silent connection was dropped.
		var open []string
		for i, c := range silent {
			if closedBy(c, 50*time.Millisecond) != nil {
				open = append(open, fmt.Sprint(i))
			}
		}
		if len(open) == len(silent) {
			t.Errorf("a 4th client was served while the 3 silent connections held every slot (open: %s)", strings.Join(open, ","))
		}
	})
}

// TestPprofNeedsAdmin: with API tokens configured, the profiler answers
// only an admin token.
func TestPprofNeedsAdmin(t *testing.T) {
	rcv := newReceiver(t)
	s, _, _ := embeddedService(t, rcv, func(c *Config) {
		c.HTTP.Pprof = true
		c.HTTP.Tokens = "ops:admin:admin-secret-0123456789,duty:viewer:viewer-secret-0123456789"
	})
	for token, want := range map[string]int{"": http.StatusUnauthorized, "viewer-secret-0123456789": http.StatusForbidden,
		"admin-secret-0123456789": http.StatusOK} {
		req, _ := http.NewRequest("GET", s.httpURL()+"/debug/pprof/goroutine?debug=1", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("token %q: status %d, want %d", token, resp.StatusCode, want)
		}
	}
}
