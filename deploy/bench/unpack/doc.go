// Command unpack is the pull-and-unpack benchmark behind `make bench-unpack`.
//
// It generates a gzip image (default 200 MiB unpacked, 5 layers), serves it
// from Debian's docker-registry on loopback, and times, on the same image and
// registry, in turns:
//
//   - shoal pull --unpack (parallel layers, pgzip);
//   - the same binary and pipeline with one layer at a time and the standard
//     library's gzip (--jobs 1 --std-gzip): the baseline;
//   - containerd 1.6 `ctr images pull` (a fresh private daemon per run,
//     overlayfs or native snapshotter);
//   - `podman pull` (fresh --root per run, overlay driver), when installed.
//
// Every run starts from an empty target; the registry's files are in the page
// cache after the warm-up run, so the figures measure the pull, not the
// registry's disk. Peak RSS comes from /usr/bin/time -v (the daemon's from
// /proc VmHWM). Results go to stdout as a table and to OUT/results.json.
package main
