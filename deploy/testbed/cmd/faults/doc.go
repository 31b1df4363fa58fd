// Command faults runs the fault suite behind `make bench-faults`: for each
// fault (see testbed.AllFaults), a bed of N hosts in network namespaces,
// a rollout of one image through the Shoal agents with the fault injected,
// and the checks that every surviving host got the right bytes and that no
// stored blob is corrupt. It prints the fault table and writes report.txt,
// report.json and each fault's process logs to the output directory. It
// must run as root, and exits non-zero if any fault broke an expectation.
package main
