package onenet

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

const token = "fwtoken2026"

var (
	plainCfg = Config{Token: token}
	aesCfg   = Config{Token: token, AESKey: "ABCDEFGHIJKLMNOP"}
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyURL(t *testing.T) {
	// Signature computed with openssl (testdata/README.md).
	echo, err := VerifyURL(token, "8fa0c1", "Xy12Ab", "Mx7yvZh+aKDzE1LZp8UnKg==")
	if err != nil || echo != "8fa0c1" {
		t.Fatalf("echo %q err %v", echo, err)
	}
	// '+' arriving unescaped in a query string reads as a space.
	if _, err := VerifyURL(token, "8fa0c1", "Xy12Ab", "Mx7yvZh aKDzE1LZp8UnKg=="); err != nil {
		t.Errorf("space for plus: %v", err)
	}
	for _, c := range []struct{ name, tok, msg, nonce, sig string }{
		{"wrong token", "other", "8fa0c1", "Xy12Ab", "Mx7yvZh+aKDzE1LZp8UnKg=="},
		{"wrong nonce", token, "8fa0c1", "Xy12Ac", "Mx7yvZh+aKDzE1LZp8UnKg=="},
		{"wrong msg", token, "8fa0c2", "Xy12Ab", "Mx7yvZh+aKDzE1LZp8UnKg=="},
		{"no signature", token, "8fa0c1", "Xy12Ab", ""},
		{"no nonce", token, "8fa0c1", "", "Mx7yvZh+aKDzE1LZp8UnKg=="},
	} {
		if _, err := VerifyURL(c.tok, c.msg, c.nonce, c.sig); !errors.Is(err, nbiot.ErrSignature) || nbiot.Reason(err) != "signature" {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := VerifyURL(token, "", "Xy12Ab", "x"); !errors.Is(err, nbiot.ErrMalformed) {
		t.Errorf("no msg: %v", err)
	}
}

func TestDecodeFixtures(t *testing.T) {
	t.Run("legacy data point", func(t *testing.T) {
		rs, err := Decode(plainCfg, fixture(t, "legacy_datapoint.json"))
		if err != nil || len(rs) != 1 {
			t.Fatal(rs, err)
		}
		r := rs[0]
		if r.Platform != nbiot.PlatformOneNET || r.Type != nbiot.TypeData || r.Device.PlatformID != "523456789" || r.Device.IMEI != "869975031234570" ||
			r.Service != "3200_0_5500" || string(r.JSON) != `{"3200_0_5500":1}` || !r.Time.Equal(time.UnixMilli(1764584400456)) || r.Seq != -1 {
			t.Errorf("%+v json %s", r, r.JSON)
		}
	})
	t.Run("legacy batch", func(t *testing.T) {
		rs, err := Decode(plainCfg, fixture(t, "legacy_batch.json"))
		if err != nil || len(rs) != 2 {
			t.Fatal(rs, err)
		}
		if rs[0].Type != nbiot.TypePresence || rs[0].Presence != nbiot.Offline || !rs[0].Time.Equal(time.UnixMilli(1764584500000)) {
			t.Errorf("presence %+v", rs[0])
		}
		if rs[1].Type != nbiot.TypeCommand || rs[1].Command == nil || rs[1].Command.Result != "ack" || rs[1].Command.ID != "c6a2f1e0-5d3b-4c41-9f3a-0d2e9b7a1c55" {
			t.Errorf("command %+v", rs[1])
		}
	})
	t.Run("studio plain", func(t *testing.T) {
		rs, err := Decode(plainCfg, fixture(t, "studio_plain.json"))
		if err != nil || len(rs) != 1 || string(rs[0].JSON) != `{"Battery_Level":"42"}` || rs[0].Device.PlatformID != "523456790" {
			t.Fatal(rs, err)
		}
	})
	t.Run("studio aes", func(t *testing.T) {
		rs, err := Decode(aesCfg, fixture(t, "studio_aes.json"))
		if err != nil || len(rs) != 1 || string(rs[0].JSON) != `{"3200_0_5500":0}` || rs[0].Device.PlatformID != "523456791" {
			t.Fatal(rs, err)
		}
		// The same body without the key is refused, not decoded as plain.
		if _, err := Decode(plainCfg, fixture(t, "studio_aes.json")); !errors.Is(err, nbiot.ErrDecrypt) {
			t.Errorf("no key: %v", err)
		}
		bad := aesCfg
		bad.AESKey = "PONMLKJIHGFEDCBA"
		if _, err := Decode(bad, fixture(t, "studio_aes.json")); err == nil {
			t.Error("wrong key accepted")
		}
	})
}

// Every change to a signed body, and a wrong token, is refused with
// ErrSignature before anything is decoded.
func TestDecodeSignatureRefused(t *testing.T) {
	for _, name := range []string{"legacy_datapoint.json", "legacy_batch.json", "studio_plain.json", "studio_aes.json"} {
		body := string(fixture(t, name))
		cfg := plainCfg
		if strings.HasPrefix(name, "studio_aes") {
			cfg = aesCfg
		}
		wrongTok := cfg
		wrongTok.Token = "fwtoken2027"
		if _, err := Decode(wrongTok, []byte(body)); !errors.Is(err, nbiot.ErrSignature) {
			t.Errorf("%s wrong token: %v", name, err)
		}
		var env map[string]any
		if err := json.Unmarshal([]byte(body), &env); err != nil {
			t.Fatal(err)
		}
		env["nonce"] = "tampered"
		b, _ := json.Marshal(env)
		if _, err := Decode(cfg, b); !errors.Is(err, nbiot.ErrSignature) {
			t.Errorf("%s tampered nonce: %v", name, err)
		}
		delete(env, "signature")
		delete(env, "msg_signature")
		b, _ = json.Marshal(env)
		if _, err := Decode(cfg, b); !errors.Is(err, nbiot.ErrSignature) {
			t.Errorf("%s unsigned: %v", name, err)
		}
	}
	// A changed value in a legacy object msg breaks the signature.
	body := strings.Replace(string(fixture(t, "legacy_datapoint.json")), `"value":1`, `"value":0`, 1)
	if _, err := Decode(plainCfg, []byte(body)); !errors.Is(err, nbiot.ErrSignature) {
		t.Errorf("tampered value: %v", err)
	}
}

func signed(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"msg": msg, "nonce": "n1", "signature": Sign(token, "n1", msg)})
	return b
}

func TestDecodeRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		body []byte
		want error
	}{
		{"not json", []byte(`{"msg":`), nbiot.ErrMalformed},
		{"no msg", []byte(`{"nonce":"n1","signature":"x"}`), nbiot.ErrMalformed},
		{"msg number", signed(`5`), nbiot.ErrDecrypt}, // a string that is not JSON reads as ciphertext
		{"empty array", signed(`[]`), nbiot.ErrMalformed},
		{"no type", signed(`{"dev_id":1}`), nbiot.ErrMalformed},
		{"unknown type", signed(`{"type":3,"dev_id":1}`), nbiot.ErrUnknownType},
		{"no device", signed(`{"type":1,"ds_id":"a","value":1}`), nbiot.ErrNoDevice},
		{"dev_id text", signed(`{"type":1,"dev_id":"x","ds_id":"a","value":1}`), nbiot.ErrMalformed},
		{"no value", signed(`{"type":1,"dev_id":1,"ds_id":"a"}`), nbiot.ErrBadPayload},
		{"bad status", signed(`{"type":2,"dev_id":1,"status":5}`), nbiot.ErrBadValue},
		{"bad cmd", signed(`{"type":7,"dev_id":1,"cmd_type":9,"cmd_id":"c"}`), nbiot.ErrBadValue},
		{"bad at", signed(`{"type":2,"dev_id":1,"status":1,"at":-4}`), nbiot.ErrBadValue},
		{"one bad of two", signed(`[{"type":2,"dev_id":1,"status":1},{"type":9,"dev_id":1}]`), nbiot.ErrUnknownType},
	} {
		_, err := Decode(plainCfg, c.body)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err == nil {
		t.Error("empty token accepted")
	}
	if err := (Config{Token: "t", AESKey: "short"}).Validate(); err == nil {
		t.Error("short key accepted")
	}
	if err := aesCfg.Validate(); err != nil {
		t.Error(err)
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b, true)
		f.Add(b, false)
	}
	f.Add(signed(`{"type":1,"dev_id":1,"ds_id":"a","value":1}`), false)
	f.Fuzz(func(t *testing.T, b []byte, useAES bool) {
		cfg := plainCfg
		if useAES {
			cfg = aesCfg
		}
		rs, err := Decode(cfg, b)
		if err != nil {
			if nbiot.Reason(err) == "other" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		for _, r := range rs {
			if r.Type == nbiot.TypeInvalid || (r.Device.PlatformID == "" && r.Device.IMEI == "") {
				t.Fatalf("accepted %+v", r)
			}
			if r.JSON != nil && !json.Valid(r.JSON) {
				t.Fatalf("invalid JSON out: %s", r.JSON)
			}
		}
	})
}

func BenchmarkDecodePlain(b *testing.B) {
	body := fixture(b, "legacy_datapoint.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(plainCfg, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeAES(b *testing.B) {
	body := fixture(b, "studio_aes.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(aesCfg, body); err != nil {
			b.Fatal(err)
		}
	}
}
