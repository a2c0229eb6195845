// Package bridge takes the reports of NB-IoT operator platforms (CTWing,
// OneNET) and GB/T 45839 peer platforms into firewatch: it mounts their
// HTTP handlers (rate limits, optional own TLS listener), finds each
// reporting detector in the ledger by IMEI, platform device id or GB/T 45839
// serial, decodes its payload with its product codec, and hands the result
// to the pipeline as messages of the MQTT contract (docs/mqtt.md). Reports of
// devices not in the ledger, and GB/T 45839 Install_info, become pending
// entries an administrator reads through the API and binds in the ledger.
package bridge
