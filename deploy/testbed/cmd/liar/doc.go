// Command liar is the corrupt peer of the fault suite (deploy/testbed): a
// libp2p host with a valid identity that announces to the tracker that it
// holds every blob it is given, complete, and answers every piece request
// with pseudo-random bytes of the right length. Agents must check each
// piece against its CID, refuse the liar's and drop it.
//
//	liar -tracker URL -token-file F -listen /ip4/A/tcp/P [-id-file F] sha256:<hex>:<size> …
//
// It writes its peer ID to -id-file once it announces, logs how many
// pieces it was asked for and the bytes it sent, and runs until SIGTERM or
// SIGINT.
package main
