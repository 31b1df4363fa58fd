// Package depcheck holds the test that enforces Shoal's import rules. It
// has no code of its own: depcheck_test.go runs `go list -deps -json` over
// every package of the module and checks a table of rules against the
// non-test import graph, so a rule lives in one row of a table rather than
// in a sentence of prose that nothing checks.
//
// The rules say which way dependencies point (see the house style):
//
//	cmd ──▶ agent ──▶ registryshim, p2p, tracker (client), store
//	cmd ──▶ tracker/server ──▶ tracker
//
// registryshim and the piece picker import nothing of ours, no agent links
// the tracker server, the server never imports the agent, only cmd/ reads
// configuration through viper and cobra, and test helper packages (…test)
// are imported only by tests and by one another.
//
// A rule that names a package which does not exist fails instead of passing
// with nothing to check, so renaming a package means updating its rule.
// It also holds the rule that no non-test Go file is over 600 lines
// (size_test.go).
package depcheck
