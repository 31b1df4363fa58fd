// Package conf writes the configuration files of the third-party services
// that Shoal's tests, testbed and benchmarks start: Debian's docker-registry
// (CNCF distribution) as the origin, and containerd as a real runtime.
package conf
