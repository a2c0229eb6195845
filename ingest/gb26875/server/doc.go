// Package server is firewatch's monitoring-centre endpoint of GB/T 26875.3 (城市消防远程监控系统): TCP and
// UDP listeners that take the frames of 用户信息传输装置 (UITDs), turn their uploads into firewatch v1
// messages on the ledger devices of the building's fire facilities, hand them to the pipeline, and only then
// answer 确认. It knows the pipeline only by Handler; docs/gb26875.md describes what is mapped to what.
package server
