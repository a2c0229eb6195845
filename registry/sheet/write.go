package sheet

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/xuri/excelize/v2"
)

// WriteCSV writes the devices of e as CSV with the 设备 sheet's columns: UTF-8
// with a byte order mark, so that Excel opens it as UTF-8. A nil e writes the
// template: the header row alone.
func WriteCSV(w io.Writer, e *devices.Entries) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(utf8BOM)
	cw := csv.NewWriter(bw)
	cols := deviceSpec.cols
	rec := make([]string, len(cols))
	for i, c := range cols {
		rec[i] = c.header
	}
	if err := cw.Write(rec); err != nil {
		return err
	}
	if e != nil {
		for i := range e.Devices {
			for k, c := range cols {
				rec[k] = ""
				if c.get != nil {
					rec[k] = defuse(c.get(&e.Devices[i]))
				}
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteXLSX writes e as a workbook of the sheets 设备, 网关, 微型消防站,
// 行政区划 and 说明. A nil e writes the template: the headers alone, with
// drop-downs for 设备类型, 操作 and 生成密钥. UITDs are not in spreadsheets
// (they stay in the YAML ledger and the API).
func WriteXLSX(w io.Writer, e *devices.Entries) error {
	if e == nil {
		e = &devices.Entries{}
	}
	f := excelize.NewFile()
	defer f.Close()
	st, err := newStyles(f)
	if err != nil {
		return err
	}
	if err := f.SetSheetName("Sheet1", SheetDevices); err != nil {
		return err
	}
	if err := writeSheet(f, st, &deviceSpec, e.Devices); err != nil {
		return err
	}
	if err := writeSheet(f, st, &gatewaySpec, e.Gateways); err != nil {
		return err
	}
	if err := writeSheet(f, st, &stationSpec, e.Stations); err != nil {
		return err
	}
	codes := make([]string, 0, len(e.Places))
	for c := range e.Places {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	ps := make([]place, len(codes))
	for i, c := range codes {
		ps[i] = place{c, e.Places[c]}
	}
	if err := writeSheet(f, st, &placeSpec, ps); err != nil {
		return err
	}
	if err := writeHelp(f, st); err != nil {
		return err
	}
	f.SetActiveSheet(0)
	_, err = f.WriteTo(w)
	return err
}

type styles struct{ header, text int }

func newStyles(f *excelize.File) (styles, error) {
	h, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true},
		Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"DDEBF7"}}})
	if err != nil {
		return styles{}, err
	}
	t, err := f.NewStyle(&excelize.Style{NumFmt: 49}) // "@": text, so that codes keep their digits
	return styles{header: h, text: t}, err
}

// writeSheet writes one sheet of entries with a stream writer (a million
// rows fit in little memory), after its drop-downs.
func writeSheet[T any](f *excelize.File, st styles, sp *spec[T], rows []T) error {
	if _, err := f.NewSheet(sp.sheet); err != nil {
		return err
	}
	for k, c := range sp.cols {
		var list []string
		switch c.key {
		case "kind":
			list = kindList()
		case keyOp:
			list = []string{"新增", "修改", "删除"}
		case keyGen:
			list = []string{"是", "否"}
		default:
			continue
		}
		dv := excelize.NewDataValidation(true)
		col := letter(k)
		dv.SetSqref(fmt.Sprintf("%s2:%s%d", col, col, excelize.TotalRows))
		if err := dv.SetDropList(list); err != nil {
			return err
		}
		dv.SetError(excelize.DataValidationErrorStyleWarning, c.header, "请从下拉列表中选择")
		if err := f.AddDataValidation(sp.sheet, dv); err != nil {
			return err
		}
	}
	sw, err := f.NewStreamWriter(sp.sheet)
	if err != nil {
		return err
	}
	for k, c := range sp.cols {
		width := 14.0
		switch c.key {
		case "address", "rules", "secret_hash", "endpoint", "grids":
			width = 30
		}
		if err := sw.SetColWidth(k+1, k+1, width); err != nil {
			return err
		}
		if c.text {
			if err := sw.SetColStyle(k+1, k+1, st.text); err != nil {
				return err
			}
		}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return err
	}
	vals := make([]any, len(sp.cols))
	for k, c := range sp.cols {
		vals[k] = excelize.Cell{StyleID: st.header, Value: c.header}
	}
	if err := sw.SetRow("A1", vals); err != nil {
		return err
	}
	for i := range rows {
		for k, c := range sp.cols {
			vals[k] = nil
			if c.get == nil {
				continue
			}
			v := c.get(&rows[i])
			switch {
			case v == "":
			case c.number:
				if x, err := strconv.ParseFloat(v, 64); err == nil {
					vals[k] = x
				} else {
					vals[k] = v
				}
			case c.text:
				vals[k] = excelize.Cell{StyleID: st.text, Value: v}
			default:
				vals[k] = v
			}
		}
		cell, _ := excelize.CoordinatesToCellName(1, i+2)
		if err := sw.SetRow(cell, vals); err != nil {
			return err
		}
	}
	return sw.Flush()
}

// writeHelp writes the 说明 sheet: how to fill the workbook and every column.
func writeHelp(f *excelize.File, st styles) error {
	const s = SheetHelp
	if _, err := f.NewSheet(s); err != nil {
		return err
	}
	lines := [][]string{
		{"firewatch 台账导入模板"},
		{"每个工作表的第一行是列名，请勿修改；从第二行起每行一条记录。空行会被跳过。"},
		{"导入按编号新增或整行覆盖已有记录；表中没有的列保留原值；“操作”列填“删除”则删除该编号。"},
		{"先用“试导入”（dry run）检查：所有问题按工作表、行号、列给出，全部改正后再正式导入；正式导入要么全部生效，要么全部不生效。"},
		{"新设备若不经网关、没有 NB-IoT 绑定且未填密钥哈希，导入时自动生成 MQTT 密钥；新网关同样。密钥只在导入结果中出现一次，请立即保存，系统只保存其哈希。"},
		{"编码类的列（设备编号、行政区划代码、联系电话、IMEI 等）已设为文本格式，请勿改为数字格式，以免长数字被改写。"},
		{"设备类型可填：" + kindChoices()},
		{},
		{"工作表", "列名", "字段", "说明"},
	}
	add := func(sheet string, key, header, help string) {
		lines = append(lines, []string{sheet, header, key, help})
	}
	for _, c := range deviceSpec.cols {
		add(SheetDevices, c.key, c.header, c.help)
	}
	for _, c := range gatewaySpec.cols {
		add(SheetGateways, c.key, c.header, c.help)
	}
	for _, c := range stationSpec.cols {
		add(SheetStations, c.key, c.header, c.help)
	}
	for _, c := range placeSpec.cols {
		add(SheetPlaces, c.key, c.header, c.help)
	}
	for i, l := range lines {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow(s, cell, &l); err != nil {
			return err
		}
	}
	if err := f.SetColWidth(s, "A", "A", 14); err != nil {
		return err
	}
	if err := f.SetColWidth(s, "B", "C", 18); err != nil {
		return err
	}
	if err := f.SetColWidth(s, "D", "D", 80); err != nil {
		return err
	}
	return f.SetRowStyle(s, 9, 9, st.header)
}

// defuse keeps a spreadsheet program from running a CSV cell as a formula
// (CSV injection): text that starts with =, +, -, @ and is not a number
// gets a leading apostrophe, which the import takes off again (undefuse).
func defuse(v string) string {
	if v == "" || !strings.ContainsRune("=+-@", rune(v[0])) {
		return v
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return v
	}
	return "'" + v
}

// undefuse takes off the apostrophe that defuse put before a formula character.
func undefuse(v string) string {
	if len(v) > 1 && v[0] == '\'' && strings.ContainsRune("=+-@", rune(v[1])) {
		return v[1:]
	}
	return v
}
