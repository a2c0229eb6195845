package main

import (
	"strings"
	"testing"
)

// TestConfigConsoleTiles: console.map_tiles comes from the environment or
// a flag like every key, and a template without {y} is refused at start.
func TestConfigConsoleTiles(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	c, err := loadConfig(nil, env(map[string]string{"FIREWATCH_CONSOLE_MAP_TILES": "http://tiles.local/{z}/{x}/{y}.png", "FIREWATCH_CONSOLE_MAP_ATTRIBUTION": "© 本地瓦片", "FIREWATCH_ALARMS_SECRET": secret}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Console.MapTiles != "http://tiles.local/{z}/{x}/{y}.png" || c.Console.MapAttribution != "© 本地瓦片" {
		t.Errorf("console section %+v", c.Console)
	}
	_, err = loadConfig([]string{"-console.map_tiles", "http://tiles.local/{z}/{x}.png"}, env(map[string]string{"FIREWATCH_ALARMS_SECRET": secret}))
	if err == nil || !strings.Contains(err.Error(), "console.map_tiles") {
		t.Errorf("a template without {y}: %v", err)
	}
}
