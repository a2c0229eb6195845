package main

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/alarms"
)

// TestPushKeyCommand: firewatch push-key prints each receiver's key,
// derived from alarms.secret on standard input, and refuses a short one.
func TestPushKeyCommand(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	var out, errb bytes.Buffer
	if rc := pushKey([]string{"st-tanxi", "brigade"}, strings.NewReader(secret+"\n"), &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	want := "st-tanxi " + hex.EncodeToString(alarms.PushKey([]byte(secret), "st-tanxi")) + "\n" +
		"brigade " + hex.EncodeToString(alarms.PushKey([]byte(secret), "brigade")) + "\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	if rc := pushKey([]string{"st-tanxi"}, strings.NewReader("short\n"), &out, &errb); rc == 0 {
		t.Error("a short secret was taken")
	}
}
