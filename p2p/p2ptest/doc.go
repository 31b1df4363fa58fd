// Package p2ptest provides a real in-memory p2p.Source for tests: blobs
// whose pieces can be added one by one (so HAVE announcements can be
// tested), and a corrupt mode that serves wrong bytes.
package p2ptest
