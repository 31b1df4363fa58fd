// Package trackertest holds in-memory fakes for testing the tracker and its
// users: a scripted Seeder that emits metainfo progress on command, a
// settable Clock, metainfo built from bytes, and Start, which runs a real
// tracker on loopback for the length of a test.
package trackertest
