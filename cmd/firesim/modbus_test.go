package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/gateway/modbus"
)

// syncBuffer is a bytes.Buffer safe for the command's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestModbusCommand(t *testing.T) {
	link := filepath.Join(t.TempDir(), "ttyFW0")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- firesim(ctx, []string{"modbus", "-baud", "115200", "-link", link, "-walk", "0",
			"-device", "1=ARCM300", "-device", "2=PT-100", "-fault", "2=exception:6"}, &out, &errb)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(link); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no %s after 10 s; output %s %s", link, out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	port, err := modbus.OpenSerial(modbus.SerialConfig{Device: link, Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	m := modbus.NewMaster(port, modbus.Config{Timeout: 300 * time.Millisecond, Baud: 115200})
	regs, err := m.ReadRegisters(ctx, 1, modbus.FuncReadInputRegisters, 0, 1)
	if err != nil || regs[0] != 35 {
		t.Errorf("residual current register = %v, %v; want 35 mA", regs, err)
	}
	var ex *modbus.Exception
	if _, err := m.ReadRegisters(ctx, 2, modbus.FuncReadHoldingRegisters, 0, 2); !errors.As(err, &ex) || ex.Code != 6 {
		t.Errorf("slave 2 with an injected busy exception: %v", err)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit %d: %s", c, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("firesim modbus did not stop")
	}
	if _, err := os.Lstat(link); err == nil {
		t.Error("the link was left behind")
	}
}
