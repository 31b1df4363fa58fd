// Package storetest is the contract suite for content stores: Run checks
// any implementation of Store against the behaviour the agent relies on
// (dedup, streaming, verification, failure propagation). It also offers
// small helpers to build blobs and fillers in other packages' tests.
package storetest
