// Package stream carries GB/T 26875.3 frames over a byte stream: a Reassembler cuts TCP reads into frames
// (split frames, several frames per read, garbage between frames with resynchronisation at the next `@@`,
// a bounded buffer), Read drives one connection with an idle timeout, and Dedup recognises a
// retransmission (same source, serial number and content) so that it is confirmed again but evaluated
// once. The frames themselves are parsed by package gb26875.
package stream
