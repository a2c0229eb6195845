package alarms

import (
	"strings"
	"testing"
)

func TestDeviceWordsPoint(t *testing.T) {
	for _, c := range []struct {
		d     PushDevice
		place string
		want  string
	}{
		{PushDevice{ID: "el-1", KindZH: "电气火灾监控探测器", Addr: "和平路12号"}, "潭西街道某村", "潭西街道某村 和平路12号 电气火灾监控探测器 el-1"},
		{PushDevice{ID: "fa-1", KindZH: "建筑消防设施", Addr: "柳石家园 3号楼2层走廊", Point: "柳石家园 消防控制室 火灾报警系统1 点型光电感烟火灾探测器 0x00000105"},
			"潭西街道鹅山村", "潭西街道鹅山村 柳石家园 消防控制室 火灾报警系统1 点型光电感烟火灾探测器 0x00000105 3号楼2层走廊 fa-1"},
		{PushDevice{ID: "fa-2", KindZH: "建筑消防设施", Addr: "2号楼", Point: "柳石家园 消防控制室 消火栓系统2"}, "", "柳石家园 消防控制室 消火栓系统2 2号楼 fa-2"},
	} {
		var w []string
		for _, s := range deviceWords(&c.d, c.place) {
			if s != "" {
				w = append(w, s)
			}
		}
		if got := strings.Join(w, " "); got != c.want {
			t.Errorf("deviceWords(%+v) = %q, want %q", c.d, got, c.want)
		}
	}
}
