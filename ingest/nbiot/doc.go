// Package nbiot holds what the NB-IoT platform sources share: Report, the one
// small neutral type into which a CTWing (China Telecom AEP) or OneNET (China
// Mobile) push or a GB/T 45839-2025 Appendix D call is decoded, the sentinel
// errors by which rejections are counted, and product codecs: YAML mappings
// (maps/*.yaml) that turn a detector's JSON thing-model properties or its
// passthrough bytes into catalog metrics and events.
//
// The platform decoders live in the subpackages ctwing, onenet and gb45839;
// none of them does I/O. What is confirmed of each format is in
// docs/nbiot.md.
package nbiot
