// Package spooltest is a file system for spool tests that fails on
// demand: any write, fsync, read, create or rename can return ENOSPC or
// EIO, a write can be torn at any byte, and Crash simulates a power cut
// (unsynced data cut off, zero-filled or garbled). Flip changes a byte of a
// file as bit rot on flash does. DieAfter cuts the power in the middle of
// what the spool does next: n more operations succeed, then everything
// fails until Crash.
//
// Its model of durability: file data written is durable after the file's
// Sync; directory operations (create, rename, remove) are atomic and
// durable at once. That is what ext4 (data=ordered) and most flash file
// systems give a program that, like the spool, fsyncs a file before it
// renames it and syncs the directory after creating a segment.
package spooltest
