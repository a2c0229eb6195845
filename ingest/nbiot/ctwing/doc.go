// Package ctwing decodes the subscription pushes (订阅推送) of China Telecom's
// CTWing / AEP IoT platform: one JSON object per HTTP POST, told apart by
// messageType (dataReport, deviceOnlineOfflineReport, eventReport,
// commandResponse). It does no I/O and no product decoding: passthrough
// APPdata comes out as bytes, thing-model properties as a JSON object, for a
// product codec of package nbiot. No official CTWing push specification was
// found; the fields follow captured payloads (docs/nbiot.md).
package ctwing
