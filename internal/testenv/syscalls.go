//go:build linux

package testenv

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Issue 19: counting system calls per message at the MQTT edges.

// IOCalls is this process's read and write system calls so far.
func IOCalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		Skip(t, "no /proc/self/io: %v", err)
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}

// PublishBurst is n QoS 1 PUBLISH packets (packet ids 1…n) on topic, hand
// built (MQTT 3.1.1, 3.3).
func PublishBurst(topic string, payload []byte, n int) []byte {
	var out []byte
	for i := 1; i <= n; i++ {
		rem := 2 + len(topic) + 2 + len(payload)
		out = append(out, 0x32, byte(rem))
		out = binary.BigEndian.AppendUint16(out, uint16(len(topic)))
		out = append(out, topic...)
		out = binary.BigEndian.AppendUint16(out, uint16(i))
		out = append(out, payload...)
	}
	return out
}
