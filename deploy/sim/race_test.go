//go:build race

package sim

// raceEnabled: under the race detector the code runs several times slower,
// so TestSimSmall simulates a smaller rollout.
const raceEnabled = true
