// Package sheet imports and exports the device registry (台账) as spreadsheets:
// an XLSX workbook with one sheet per section (设备, 网关, 微型消防站, 行政区划)
// and a CSV of the devices, both with Chinese column headers. An import is
// parsed into a devices.Change, every problem located by sheet, row and
// column, and committed all-or-nothing through the registry store; device
// and gateway secrets it generates are returned once and only their hashes
// kept.
package sheet
