package gb26875

import "testing"

func TestNames(t *testing.T) {
	f, _ := parse(t, "frames/worked_example.hex")
	var u Upload
	if err := u.Unmarshal(f.ADU); err != nil {
		t.Fatal(err)
	}
	c := u.ComponentStates[0]
	b := c.Component.AppendText(nil)
	b = append(Text(append(b, ' '), c.Desc[:]), ' ')
	b = c.State.AppendText(b)
	// The point as the dispatcher text names it.
	if got, want := string(b), "火灾报警系统1 点型光电感烟火灾探测器 0x00000105 3号楼2层走廊 火警"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	for _, c := range []struct {
		got, want string
	}{
		{string((SysNormal | SysMainPower | SysBus).AppendText(nil)), "主电故障、总线故障"},
		{string(SysNormal.AppendText(nil)), "正常"},
		{string(SysSupervisory.AppendText(nil)), "测试、监管"},
		{string((CompNormal | CompDisabled).AppendText(nil)), "屏蔽"},
		{string((UITDNormal | UITDLink).AppendText(nil)), "通信信道故障"},
		{string((OpReset | OpSilence).AppendText(nil)), "复位、消音"},
		{string(UOpDutyAnswer.AppendText(nil)), "查岗应答"},
		{string(Component{System{200, 3}, 250, 0xABCDEF}.AppendText(nil)), "系统类型200/3 部件类型250 0x00abcdef"},
	} {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
	}
}
