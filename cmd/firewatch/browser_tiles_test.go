package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// tileServer is a local XYZ tile server: each 256-pixel tile is filled
// with a colour of its x and y (tileColour), and every request is counted.
type tileServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[[3]int]int
}

func newTileServer(t *testing.T) *tileServer {
	ts := &tileServer{seen: map[[3]int]int{}}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var z, x, y int
		if _, err := fmt.Sscanf(r.URL.Path, "/%d/%d/%d.png", &z, &x, &y); err != nil || z < 0 || z > 20 || x < 0 || y < 0 || x >= 1<<z || y >= 1<<z {
			http.NotFound(w, r)
			return
		}
		ts.mu.Lock()
		ts.seen[[3]int{z, x, y}]++
		ts.mu.Unlock()
		img := image.NewRGBA(image.Rect(0, 0, 256, 256))
		c := tileColour(x, y)
		for i := 0; i < len(img.Pix); i += 4 {
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
		}
		w.Header().Set("Content-Type", "image/png")
		png.Encode(w, img)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tileServer) requested(k [3]int) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.seen[k] > 0
}

// tileColour tells a tile from its eight neighbours.
func tileColour(x, y int) color.RGBA {
	return color.RGBA{uint8(60 + 60*(x%3)), uint8(60 + 60*(y%3)), 0, 255}
}

// whichTile is the tile (x mod 3, y mod 3) whose colour c is nearest to
// (the grid outlines tint the tiles a little).
func whichTile(c color.Color) [2]int {
	r, g, b, _ := c.RGBA()
	best, d := [2]int{-1, -1}, math.Inf(1)
	for i := range 3 {
		for j := range 3 {
			tc := tileColour(i, j)
			dd := math.Pow(float64(r>>8)-float64(tc.R), 2) + math.Pow(float64(g>>8)-float64(tc.G), 2) + math.Pow(float64(b>>8)-float64(tc.B), 2)
			if dd < d {
				best, d = [2]int{i, j}, dd
			}
		}
	}
	return best
}

// mercator is the web-mercator pixel of (lat, lon) at zoom z (the slippy
// map convention, written here from its definition, not from the page).
func mercator(lat, lon float64, z int) (float64, float64) {
	n := 256 * math.Exp2(float64(z))
	s := math.Sin(lat * math.Pi / 180)
	return (lon + 180) / 360 * n, (0.5 - math.Log((1+s)/(1-s))/(4*math.Pi)) * n
}

// TestConsoleMapTiles: with console.map_tiles pointing at a tile server,
// the console's map asks for the tiles that cover the ledger's extent at
// the largest zoom at which it fits, draws them (the page's CSP lets it),
// shows the attribution, and the points land on them where web mercator
// puts them: a station's square on its spot, the tile edges where the
// tiles' numbers say.
func TestConsoleMapTiles(t *testing.T) {
	ts := newTileServer(t)
	rcv := newReceiver(t)
	s, _ := responderService(t, rcv, func(c *Config) {
		c.Console.MapTiles = ts.URL + "/{z}/{x}/{y}.png"
		c.Console.MapAttribution = "© 测试瓦片 · WGS-84"
	})
	ctx := consoleSignIn(t, s)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const d = document.getElementById('map').dataset;
		return +d.tilesWanted > 0 && d.tilesDrawn === d.tilesWanted; })()`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		d, _ := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.assign({}, document.getElementById('map').dataset)`))
		t.Fatalf("tiles not all drawn: %v (map %v)", err, d)
	}
	st := readMap(t, ctx)
	z, ox, oy := st.z, st.ox, st.oy
	t.Logf("map %+v", st)
	if st.Attr != "© 测试瓦片 · WGS-84" {
		t.Errorf("attribution %q", st.Attr)
	}

	// The zoom is the largest at which the ledger's points (responderLedger)
	// fit the canvas with its 20-pixel margins.
	pts := [][2]float64{{24.2600, 109.3500}, {24.2700, 109.3600}, {24.2610, 109.3510}, {24.2612, 109.3512}, {24.2620, 109.3515}, {24.2590, 109.3490}, {24.4000, 109.5000}}
	fits := func(z int) bool {
		x0, y0 := mercator(24.4000, 109.3490, z)
		x1, y1 := mercator(24.2590, 109.5000, z)
		return x1-x0 <= st.W-40 && y1-y0 <= st.H-40
	}
	if !fits(z) || fits(z+1) {
		t.Errorf("zoom %d: the extent fits %v at it, %v at %d (want the largest zoom that fits)", z, fits(z), fits(z+1), z+1)
	}
	for _, p := range pts {
		x, y := mercator(p[0], p[1], z)
		if x-float64(ox) < 0 || x-float64(ox) > st.W || y-float64(oy) < 0 || y-float64(oy) > st.H {
			t.Errorf("point %v at (%.0f, %.0f) is off the %gx%g canvas", p, x-float64(ox), y-float64(oy), st.W, st.H)
		}
	}
	// Every tile under the canvas was asked for, at that zoom.
	want := 0
	for ty := floorDiv(oy, 256); ty*256 < oy+int(st.H); ty++ {
		for tx := floorDiv(ox, 256); tx*256 < ox+int(st.W); tx++ {
			want++
			if !ts.requested([3]int{z, tx, ty}) {
				t.Errorf("tile %d/%d/%d under the canvas was not requested", z, tx, ty)
			}
		}
	}
	if st.Wanted != fmt.Sprint(want) || st.Drawn != fmt.Sprint(want) {
		t.Errorf("the page wants %s tiles and drew %s, want %d", st.Wanted, st.Drawn, want)
	}

	at := stationsLand(t, ctx, st)

	// The tiles sit where their numbers say: left and right of each
	// vertical tile edge inside the canvas, the colours of the tiles
	// there (most of five rows: an outline may cross one).
	edges := 0
	for X := (floorDiv(ox, 256) + 1) * 256; X < ox+int(st.W)-4; X += 256 {
		edges++
		ok := 0
		for i := range 5 {
			Y := oy + int(st.H)*(i+1)/6
			l, r := whichTile(at(float64(X-ox-3), float64(Y-oy))), whichTile(at(float64(X-ox+2), float64(Y-oy)))
			ty := floorDiv(Y, 256)
			wl, wr := [2]int{(X/256 - 1) % 3, ty % 3}, [2]int{(X / 256) % 3, ty % 3}
			if l == wl && r == wr {
				ok++
			} else {
				t.Logf("edge x=%d row %d: tiles %v|%v, want %v|%v", X, Y, l, r, wl, wr)
			}
		}
		if ok < 4 {
			t.Errorf("tile edge at world x=%d: %d of 5 rows show the expected tiles on both sides", X, ok)
		}
	}
	if edges == 0 {
		t.Errorf("no tile edge inside the %gpx canvas", st.W)
	}
	screenshot(t, ctx, "console-desktop-tiles")

	// The wheel zooms in one step about the middle, with the tiles of the
	// next zoom; a double click returns to the fitted view.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('map').dispatchEvent(new WheelEvent('wheel', {deltaY: -100, cancelable: true}))`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`(() => { const d = document.getElementById('map').dataset;
		return d.tileZoom === '%d' && +d.tilesWanted > 0 && d.tilesDrawn === d.tilesWanted; })()`, z+1), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("zoom in: %v", err)
	}
	mx, my := float64(ox)+st.W/2, float64(oy)+st.H/2 // the middle, at z
	if k := [3]int{z + 1, int(2 * mx / 256), int(2 * my / 256)}; !ts.requested(k) {
		t.Errorf("zoomed in, the tile %v under the middle was not requested", k)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('map').dispatchEvent(new MouseEvent('dblclick'))`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`(() => { const d = document.getElementById('map').dataset;
		return d.tileZoom === '%d' && d.tileOrigin === '%d,%d'; })()`, z, ox, oy), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("double click back to the fitted view: %v", err)
	}
}

// consoleSignIn opens the console of s at desktop size and signs in as
// a viewer.
func consoleSignIn(t *testing.T, s *service) context.Context {
	t.Helper()
	ctx := newBrowser(t, 2*time.Minute)
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1366, 900),
		chromedp.Navigate(s.httpURL()+"/console"),
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), "viewer-secret-0123456789"),
		chromedp.Click(chromedp.CSS(`#login-go`)),
		chromedp.WaitVisible(chromedp.CSS(`#board[data-loaded="1"]`)),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	return ctx
}

// mapState is what the console's map shows (tiles.js's data attributes)
// and where the canvas is on the page.
type mapState struct {
	Zoom, Origin, Wanted, Drawn, Failed string
	W, H, Left, Top                     float64
	Attr                                string
	z, ox, oy                           int
}

func readMap(t *testing.T, ctx context.Context) mapState {
	t.Helper()
	st, err := chromedp.Run(ctx, chromedp.Evaluate[mapState](`(() => { const c = document.getElementById('map'), r = c.getBoundingClientRect();
		return {Zoom: c.dataset.tileZoom, Origin: c.dataset.tileOrigin, Wanted: c.dataset.tilesWanted, Drawn: c.dataset.tilesDrawn, Failed: c.dataset.tilesFailed || '0',
			W: c.clientWidth, H: c.clientHeight, Left: r.left, Top: r.top, Attr: document.getElementById('map-attr').hidden ? '' : document.getElementById('map-attr').textContent}; })()`))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Sscan(st.Zoom, &st.z)
	fmt.Sscanf(st.Origin, "%d,%d", &st.ox, &st.oy)
	return st
}

// stationsLand checks in a screenshot that the stations' squares are where
// web mercator puts them, and returns the screenshot's pixels by canvas
// position.
func stationsLand(t *testing.T, ctx context.Context, st mapState) func(cx, cy float64) color.Color {
	t.Helper()
	z, ox, oy := st.z, st.ox, st.oy
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	at := func(cx, cy float64) color.Color { return img.At(int(st.Left+cx), int(st.Top+cy)) }

	// The stations' blue squares (10 pixels) sit where web mercator puts
	// them: blue at their middle, 3 pixels into each corner and 4 towards
	// each side, not 8 pixels out (most of them: the grid's outline
	// crosses the squares here).
	blue := func(cx, cy float64) bool {
		r, g, b, _ := at(cx, cy).RGBA()
		return r>>8 < 80 && g>>8 > 60 && g>>8 < 130 && b>>8 > 200
	}
	for _, p := range [][2]float64{{24.2600, 109.3500}, {24.2700, 109.3600}} {
		x, y := mercator(p[0], p[1], z)
		cx, cy := x-float64(ox), y-float64(oy)
		in, out := 0, 0
		for _, d := range [][2]float64{{0, 0}, {-3, -3}, {3, -3}, {-3, 3}, {3, 3}, {-4, 0}, {4, 0}, {0, -4}, {0, 4}} {
			if blue(cx+d[0], cy+d[1]) {
				in++
			}
			if d != [2]float64{} && !blue(cx+d[0]*8/3, cy+d[1]*8/3) {
				out++
			}
		}
		if in < 5 || out < 6 {
			t.Errorf("station at %v, canvas pixel (%.0f, %.0f): blue at %d of 9 points of its square, not blue at %d of 8 points around it", p, cx, cy, in, out)
		}
	}
	return at
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// TestConsoleMapTilesDown: with console.map_tiles set but its server
// unreachable (no internet, a tile server down), the map still shows the
// stations where they belong, over a blank ground, and counts the failed
// tiles.
func TestConsoleMapTilesDown(t *testing.T) {
	ts := newTileServer(t)
	url := ts.URL
	ts.Close() // connection refused from here on
	rcv := newReceiver(t)
	s, _ := responderService(t, rcv, func(c *Config) { c.Console.MapTiles = url + "/{z}/{x}/{y}.png" })
	ctx := consoleSignIn(t, s)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const d = document.getElementById('map').dataset;
		return +d.tilesWanted > 0 && +d.tilesFailed >= +d.tilesWanted; })()`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("failed tiles not counted: %v", err)
	}
	st := readMap(t, ctx)
	if st.Drawn != "0" {
		t.Errorf("%s tiles drawn from a server that is down", st.Drawn)
	}
	stationsLand(t, ctx, st)
}
