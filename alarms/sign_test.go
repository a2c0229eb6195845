package alarms

import (
	"errors"
	"strings"
	"testing"
)

func TestSignVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"version":"v1","alarm_id":"alm-000001"}`)
	const ts = "1795420931"
	sig := Sign(secret, ts, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("Sign = %q, want sha256=<64 hex>", sig)
	}
	tampered := []byte(strings.Replace(string(body), "000001", "000002", 1))
	tests := []struct {
		name      string
		secret    []byte
		ts        string
		body      []byte
		sig       string
		wantBad   bool // ErrBadSignature
		wantOther bool // another error
	}{
		{name: "valid", secret: secret, ts: ts, body: body, sig: sig},
		{name: "tampered body", secret: secret, ts: ts, body: tampered, sig: sig, wantBad: true},
		{name: "wrong secret", secret: []byte("other"), ts: ts, body: body, sig: sig, wantBad: true},
		{name: "other timestamp", secret: secret, ts: "1795420932", body: body, sig: sig, wantBad: true},
		{name: "no prefix", secret: secret, ts: ts, body: body, sig: strings.TrimPrefix(sig, "sha256="), wantBad: true},
		{name: "bad hex", secret: secret, ts: ts, body: body, sig: "sha256=zz", wantBad: true},
		{name: "truncated", secret: secret, ts: ts, body: body, sig: sig[:len(sig)-2], wantBad: true},
		{name: "upper-case hex", secret: secret, ts: ts, body: body, sig: "sha256=" + strings.ToUpper(sig[7:])},
		{name: "empty secret", secret: nil, ts: ts, body: body, sig: Sign(nil, ts, body), wantOther: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.ts, tt.body, tt.sig)
			switch {
			case tt.wantBad && !errors.Is(err, ErrBadSignature):
				t.Errorf("Verify = %v, want ErrBadSignature", err)
			case tt.wantOther && (err == nil || errors.Is(err, ErrBadSignature)):
				t.Errorf("Verify = %v, want another error", err)
			case !tt.wantBad && !tt.wantOther && err != nil:
				t.Errorf("Verify = %v, want nil", err)
			}
		})
	}
}

// TestSignKnownAnswer pins the construction (timestamp "." body), which
// receivers in other languages reimplement.
func TestSignKnownAnswer(t *testing.T) {
	// printf '1700000000.{}' | openssl dgst -sha256 -hmac key
	const want = "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
	if got := Sign([]byte("key"), "1700000000", []byte("{}")); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}
