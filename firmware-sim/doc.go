// Package sim models the behaviour of firewatch's field devices — electrical-fire
// monitors (电气火灾监控探测器), smoke detectors (独立式感烟火灾探测报警器), hydrant
// pressure sensors (消火栓水压) and e-bike charging cabinets (电动自行车充电柜) — so that
// firesim and tests can publish realistic MQTT payloads (docs/mqtt.md) without hardware.
//
// A Fleet produces one message at a time, deterministically for a seed and a sequence of
// clock values; named incident scenarios (fire, charger overheat, hydrant pressure loss)
// drive chosen devices past the default alarm thresholds and hold them there.
// GenerateLedger writes a demo ledger (台账) across four real counties.
package sim
