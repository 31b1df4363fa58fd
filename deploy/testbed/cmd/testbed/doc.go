// Command testbed runs the swarm rollout benchmark behind `make
// bench-swarm`: N hosts in network namespaces pull one image through their
// Shoal agents at the same instant, then straight from the origin, and the
// command prints a table and writes report.json, report.txt and chart.svg
// to the output directory. It must run as root. Ctrl-C stops the run and
// removes everything it created; a second Ctrl-C exits at once, and the
// next run removes the leftovers.
package main
