// Package systemd holds the systemd units of Shoal and their tests; it has
// no code. The files:
//
//	shoal-agent.service    the node agent, settings in /etc/default/shoal-agent
//	shoal-tracker.service  the tracker and seeder, settings in /etc/default/shoal-tracker
//	shoal-agent.env        example of /etc/default/shoal-agent
//	shoal-tracker.env      example of /etc/default/shoal-tracker
//	shoal.sysusers         the user shoal, for /usr/lib/sysusers.d/shoal.conf
//
// Both units run as the user shoal with no capability, a read-only system
// (ProtectSystem=strict) except their StateDirectory, and seccomp limits
// on system calls and address families. The tests check the units with
// systemd-analyze (verify, an offline security review), assert every
// hardening setting, start shoal with the example environment files, and
// run a tracker and agents under strace to check that what they do stays
// within the units' limits: every system call in SystemCallFilter, every
// socket family in RestrictAddressFamilies, no writable and executable
// memory, no write outside the data directory. systemd itself does not run
// in the test machines, so the units are never started there.
package systemd
