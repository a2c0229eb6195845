package gb26875

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Parse and to the ADU decoders. Nothing may panic; a frame Parse
// accepts must be rebuilt byte for byte by AppendFrame from its header and ADU, and an upload ADU that
// decodes must be rebuilt byte for byte by Append.
func FuzzDecode(f *testing.F) {
	for _, dir := range []string{"testdata/frames", "testdata/bad"} {
		names, _ := filepath.Glob(filepath.Join(dir, "*.hex"))
		for _, n := range names {
			rel, _ := filepath.Rel("testdata", n)
			f.Add(hexFile(f, rel))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Frame
		err := Parse(b, &fr)
		Reason(err)
		if Len(b) != 0 && err == nil && Len(b) != len(b) {
			t.Fatalf("accepted %d bytes, length field says %d", len(b), Len(b))
		}
		var u Upload
		var d Downlink
		if err != nil {
			// Whatever was framed, the ADU decoders must survive the bytes too.
			_ = u.Unmarshal(b)
			_ = d.Unmarshal(b)
			return
		}
		if got := AppendFrame(nil, &fr.Header, fr.ADU); !bytes.Equal(got, b) {
			t.Fatalf("rebuilt\n% x\nfrom\n% x", got, b)
		}
		if u.Unmarshal(fr.ADU) == nil {
			got, err := u.Append(nil)
			if err != nil || !bytes.Equal(got, fr.ADU) {
				t.Fatalf("upload rebuilt % x (%v) from % x", got, err, fr.ADU)
			}
			for _, c := range u.ComponentStates {
				Text(nil, c.Desc[:])
				c.Time.Time(nil)
			}
			for _, a := range u.Analogs {
				a.Value()
			}
		}
		if d.Unmarshal(fr.ADU) == nil {
			if _, err := d.Append(nil); err != nil {
				t.Fatalf("downlink %+v decoded but does not build: %v", d, err)
			}
		}
	})
}

// TestFuzzCorpus keeps the committed seed corpus parseable (it is what `make fuzz` starts from).
func TestFuzzCorpus(t *testing.T) {
	names, err := filepath.Glob("testdata/fuzz/FuzzDecode/*")
	if err != nil || len(names) == 0 {
		t.Fatalf("no seed corpus: %v", err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
			t.Errorf("%s: %v", n, err)
		}
	}
}
