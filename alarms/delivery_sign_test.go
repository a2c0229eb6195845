package alarms

import (
	"encoding/hex"
	"errors"
	"net/http"
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

func TestSignFor(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	body := []byte(`{"version":"v1","alarm_id":"alm-000001"}`)
	const ts = "1795420931"
	ka, kb := PushKey(secret, "st-a"), PushKey(secret, "st-b")
	if string(ka) == string(kb) || string(ka) == string(secret) {
		t.Fatal("recipients share a key")
	}
	sig := SignFor(ka, "st-a", ts, body)
	for _, c := range []struct {
		name      string
		keys      [][]byte
		recipient string
		header    string
		ok        bool
	}{
		{"own key", [][]byte{ka}, "st-a", sig, true},
		{"old and new key while rotating", [][]byte{kb, ka}, "st-a", sig, true},
		{"two signatures while firewatch rotates", [][]byte{ka}, "st-a", SignFor(kb, "st-a", ts, body) + ", " + sig, true},
		{"another receiver's key", [][]byte{kb}, "st-a", sig, false},
		// A receiver holding st-a's key cannot sign for st-b, and a push
		// signed for st-a is not valid as one for st-b even with one key.
		{"forged by another receiver", [][]byte{kb}, "st-b", SignFor(ka, "st-b", ts, body), false},
		{"recipient swapped", [][]byte{ka}, "st-b", sig, false},
		{"v1 in the v2 header", [][]byte{ka}, "st-a", Sign(ka, ts, body), false},
		{"empty", [][]byte{ka}, "st-a", "", false},
	} {
		err := VerifyFor(c.keys, c.recipient, ts, body, c.header)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// Test vector for receivers in other languages (docs/dispatch.md).
	k := PushKey([]byte("key"), "st-tanxi")
	if got := hex.EncodeToString(k); got != pushKeyVector {
		t.Errorf("PushKey(key, st-tanxi) = %s", got)
	}
	if got := SignFor(k, "st-tanxi", "1700000000", []byte("{}")); got != signForVector {
		t.Errorf("SignFor = %s", got)
	}
}

// Test vectors quoted in docs/dispatch.md.
const (
	pushKeyVector = "35461379b8310b749e9a01a77c0d193e856e9ebc427236bf6e24180e3b5a8dee"
	signForVector = "v2=a132f04790ffe574bbaee1c81c5cc6b46e965ce00ceb0a1e97436ca37e5afa82"
)

// TestPushSignatureHeaders: what a push carries for each setting.
func TestPushSignatureHeaders(t *testing.T) {
	l := testLedger(t, "http://tanxi.example/hook", "http://other.example/hook")
	secret, prev := []byte("new-secret-0123456789abcdef"), []byte("old-secret-0123456789abcdef")
	body := []byte(`{}`)
	const ts = "1795420931"
	for _, c := range []struct {
		name, endpoint, recipient string
		cfg                       Config
		legacy                    bool
		keys                      [][]byte
	}{
		{"station", "http://tanxi.example/hook", "st-tanxi", Config{Secret: secret}, true, [][]byte{PushKey(secret, "st-tanxi")}},
		{"brigade", "http://brigade.example/119", RecipientBrigade, Config{Secret: secret, BrigadeEndpoint: "http://brigade.example/119"}, true,
			[][]byte{PushKey(secret, RecipientBrigade)}},
		{"rotating", "http://other.example/hook", "st-other", Config{Secret: secret, SecretPrevious: prev}, true,
			[][]byte{PushKey(secret, "st-other"), PushKey(prev, "st-other")}},
		{"v2 only", "http://tanxi.example/hook", "st-tanxi", Config{Secret: secret, NoLegacySignature: true}, false,
			[][]byte{PushKey(secret, "st-tanxi")}},
	} {
		m := &Manager{cfg: c.cfg, ledger: l}
		h := http.Header{}
		m.sign(h, c.endpoint, ts, body)
		if r := h.Get(HeaderRecipient); r != c.recipient {
			t.Errorf("%s: recipient %q, want %q", c.name, r, c.recipient)
		}
		for _, k := range c.keys { // each key alone verifies
			if err := VerifyFor([][]byte{k}, c.recipient, ts, body, h.Get(HeaderSignatureV2)); err != nil {
				t.Errorf("%s: %v (header %s)", c.name, err, h.Get(HeaderSignatureV2))
			}
		}
		if legacy := h.Get(HeaderSignature) != ""; legacy != c.legacy {
			t.Errorf("%s: v1 signature sent %v, want %v", c.name, legacy, c.legacy)
		}
	}
}

// FuzzVerifyFor: any header a sender makes up is refused without a panic,
// and what SignFor makes for the recipient verifies, also beside junk.
func FuzzVerifyFor(f *testing.F) {
	key := PushKey([]byte("0123456789abcdef"), "st-tanxi")
	f.Add("v2=00", "st-tanxi", "1700000000", []byte("{}"))
	f.Add(", ,v2=,v2=zz,sha256=ab", "brigade", "", []byte(nil))
	f.Fuzz(func(t *testing.T, header, recipient, ts string, body []byte) {
		good := SignFor(key, recipient, ts, body)
		if header != good && !strings.Contains(header, good) {
			if err := VerifyFor([][]byte{key}, recipient, ts, body, header); err == nil {
				t.Fatalf("made-up header %q verified", header)
			}
		}
		if err := VerifyFor([][]byte{key}, recipient, ts, body, header+","+good); err != nil {
			t.Fatalf("a valid signature after %q: %v", header, err)
		}
	})
}
