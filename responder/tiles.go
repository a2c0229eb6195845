package responder

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ConsoleConfig is the console's section of firewatch's configuration
// (key console). With no MapTiles the console's map is the plain
// projection of the ledger's coordinates, which needs no map service; with
// one it draws XYZ (slippy-map, web-mercator) tiles under the points and
// the grid outlines (issue 16, docs/console.md).
type ConsoleConfig struct {
	MapTiles       string `yaml:"map_tiles" help:"XYZ tile URL template of the console's map, e.g. http://tiles.local/{z}/{x}/{y}.png (256-pixel web-mercator tiles aligned with WGS-84: not 高德's GCJ-02, docs/console.md); empty: the plain projection of the ledger, no map service" secret:"true"`
	MapAttribution string `yaml:"map_attribution" help:"text shown under the console's map when map_tiles is set (the tile provider's attribution, e.g. 天地图 审图号)"`
}

// Validate checks the tile template: http(s), a host, and each of {z},
// {x} and {y}.
func (c ConsoleConfig) Validate() error {
	if c.MapTiles == "" {
		return nil
	}
	if _, err := c.tileOrigin(); err != nil {
		return err
	}
	for _, p := range []string{"{z}", "{x}", "{y}"} {
		if !strings.Contains(c.MapTiles, p) {
			return fmt.Errorf("console.map_tiles: the template has no %s (want e.g. http://tiles.local/{z}/{x}/{y}.png)", p)
		}
	}
	return nil
}

// tileOrigin is the scheme and host the tiles come from, for the
// console's Content-Security-Policy.
func (c ConsoleConfig) tileOrigin() (string, error) {
	r := strings.NewReplacer("{z}", "0", "{x}", "0", "{y}", "0")
	u, err := url.Parse(r.Replace(c.MapTiles))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", errors.New("console.map_tiles: want an http(s)://host/… template with {z}, {x} and {y}")
	}
	return u.Scheme + "://" + u.Host, nil
}

// consolePage serves the console; with tiles, its Content-Security-Policy
// lets the page load images from the tile host (and only from there).
func (s *Server) consolePage() http.HandlerFunc {
	const name = "static/console.html"
	o, err := s.cfg.Console.tileOrigin()
	if s.cfg.Console.MapTiles == "" || err != nil { // New refused a bad template
		return s.page(name)
	}
	b, err := staticFS.ReadFile(name)
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	policy := strings.Replace(csp, "img-src 'self' data:", "img-src 'self' data: "+o, 1)
	return secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", policy)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
	})).ServeHTTP
}
