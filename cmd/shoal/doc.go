// Command shoal is the single binary of Shoal: the node agent, the tracker,
// the image puller and the local demo swarm.
//
// wire.go builds every part of a node (upstream client, store, p2p host,
// swarm, agent) and of the tracker (server and seeder) and hands each to
// its user: it is the one place to read how Shoal is put together.
package main
