package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/internal/apidoc"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// notInAPI are the routes firewatch serves that docs/api.yaml does not
// describe, each with the reason. Everything else a request can reach must
// be in api.yaml (TestAPIDescribesEveryRoute).
var notInAPI = []string{
	"GET /r/{id}",   // the responder page (HTML), docs/console.md
	"GET /console",  // the console page (HTML), docs/console.md
	"GET /ui/",      // the pages' script, style and image files
	"/debug/pprof/", // Go's profiler (http.pprof), not an API: its own documentation
	"/debug/pprof/profile",
	"/debug/pprof/symbol",
	"/debug/pprof/trace",
}

// fullConfig is a firewatch with every optional HTTP route on: the GB/T
// 26875.3 endpoint (the UITD test ledger), the three NB-IoT platforms on
// the API's listener (with the NB-IoT test detectors), the profiler; an
// admin and a viewer token.
func fullConfig(t *testing.T) Config {
	t.Helper()
	rcv := newReceiver(t)
	cfg := embeddedConfig(t, rcv)
	b, err := os.ReadFile("../../ingest/gb26875/server/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ledger := strings.ReplaceAll(string(b), "http://127.0.0.1:8090", rcv.URL)
	ledger = strings.Replace(ledger, "\nuitds:", nbiotDevices+"uitds:", 1)
	cfg.Ledger = filepath.Join(t.TempDir(), "ledger.yaml")
	if err := os.WriteFile(cfg.Ledger, []byte(ledger), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.GB26875.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.NBIoT.CTWing.Token, cfg.NBIoT.CTWing.Tenants, cfg.NBIoT.CTWing.Products = ctwingToken, "2000033629", "15298770"
	cfg.NBIoT.OneNET.Token = onenetToken
	cfg.NBIoT.GB45839.Token = gb45839Token
	cfg.HTTP.Pprof = true
	cfg.HTTP.Tokens = "ops:admin:" + adminToken + ",duty:viewer:" + viewerToken
	return cfg
}

// nbiotDevices are the NB-IoT detectors of nbiotLedger, added to the UITD
// ledger's devices.
const nbiotDevices = `
  - id: sm-nb-ct
    kind: smoke
    grid: "450204002003"
    address: 鹅山路20号
    nbiot: {imei: "869975031234568", product: NB-SMOKE-TM, responsible: 韦建国, mobile: "13800000000"}
`

// fullService builds (without running) the service of fullConfig.
func fullService(t *testing.T) *service {
	t.Helper()
	cfg := fullConfig(t)
	s, err := newService(&cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// TestAPIDescribesEveryRoute: every route the HTTP server registers (read
// from its ServeMux, and from the alarm API's mounted on it) is described
// in docs/api.yaml with its path and method, but those of notInAPI; and
// every operation api.yaml describes reaches a route. A failure names the
// route: a route added on a branch needs its paths: entry in api.yaml.
func TestAPIDescribesEveryRoute(t *testing.T) {
	doc, err := apidoc.Load(context.Background(), apidoc.SpecPath())
	if err != nil {
		t.Fatal(err)
	}
	s := fullService(t)
	mux, ok := s.httpSrv.Handler.(*http.ServeMux)
	if !ok {
		t.Fatalf("the HTTP server's handler is a %T, not the *http.ServeMux the routes are read from", s.httpSrv.Handler)
	}
	routes, err := apidoc.Routes(mux)
	if err != nil {
		t.Fatal(err)
	}
	problems, err := apidoc.Compare(doc, mux, notInAPI)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d routes served, %d paths in docs/api.yaml, %d excluded", len(routes), doc.Paths.Len(), len(notInAPI))
}
