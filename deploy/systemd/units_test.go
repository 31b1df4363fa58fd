package systemd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// shoalBin is the shoal binary TestMain builds (none under -short);
// nothing changes it after.
var shoalBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "shoal-systemd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemd:", err)
		os.Exit(1)
	}
	if !testing.Short() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		shoalBin, err = agenttest.BuildShoal(ctx, dir)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "systemd:", err)
			_ = os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}

func needShoal(t *testing.T) string {
	t.Helper()
	if shoalBin == "" {
		t.Skip("-short: no shoal binary built")
	}
	return shoalBin
}

// installedBin is the ExecStart binary of both units.
const installedBin = "/usr/local/bin/shoal"

// spec is what one unit must say besides the shared hardening.
type spec struct {
	unit       string // file in this directory
	command    string // shoal subcommand
	envExample string // example environment file in this directory
	envFile    string // its installed path, the unit's EnvironmentFile
	stateDir   string // StateDirectory, under /var/lib
}

var specs = []spec{
	{"shoal-agent.service", "agent", "shoal-agent.env", "/etc/default/shoal-agent", "shoal"},
	{"shoal-tracker.service", "tracker", "shoal-tracker.env", "/etc/default/shoal-tracker", "shoal-tracker"},
}

// hardening is what every unit's [Service] sets, each key exactly once:
// a second line could undo the first (an empty CapabilityBoundingSet=
// resets it, a later one adds capabilities back).
var hardening = []struct{ key, value string }{
	{"User", "shoal"},
	{"Group", "shoal"},
	{"Restart", "on-failure"},
	{"UMask", "0077"},
	{"CapabilityBoundingSet", ""},
	{"AmbientCapabilities", ""},
	{"NoNewPrivileges", "yes"},
	{"ProtectSystem", "strict"},
	{"ProtectHome", "yes"},
	{"PrivateTmp", "yes"},
	{"PrivateDevices", "yes"},
	{"PrivateMounts", "yes"},
	{"ProtectKernelTunables", "yes"},
	{"ProtectKernelModules", "yes"},
	{"ProtectKernelLogs", "yes"},
	{"ProtectControlGroups", "yes"},
	{"ProtectClock", "yes"},
	{"ProtectHostname", "yes"},
	{"ProtectProc", "invisible"},
	{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX AF_NETLINK"},
	{"RestrictNamespaces", "yes"},
	{"RestrictRealtime", "yes"},
	{"RestrictSUIDSGID", "yes"},
	{"LockPersonality", "yes"},
	{"MemoryDenyWriteExecute", "yes"},
	{"RemoveIPC", "yes"},
	{"SystemCallArchitectures", "native"},
	{"SystemCallErrorNumber", "EPERM"},
}

// syscallFilter is the units' SystemCallFilter= lines, in order.
var syscallFilter = []string{"@system-service", "~@privileged"}

// TestHardening parses both units and checks every hardening setting,
// the user, the state directory the data directory lives in, the
// environment file and the command.
func TestHardening(t *testing.T) {
	t.Parallel()
	for _, s := range specs {
		t.Run(s.command, func(t *testing.T) {
			t.Parallel()
			u := readUnit(t, s.unit)
			want := func(section, key, value string) {
				t.Helper()
				got := u.values(section, key)
				if len(got) != 1 || got[0] != value {
					t.Errorf("[%s] %s: %q, want exactly one %q", section, key, got, value)
				}
			}
			for _, h := range hardening {
				want("Service", h.key, h.value)
			}
			want("Service", "StateDirectory", s.stateDir)
			want("Service", "StateDirectoryMode", "0700")
			want("Service", "Environment", "SHOAL_DATA_DIR=/var/lib/"+s.stateDir)
			want("Service", "EnvironmentFile", s.envFile) // no "-": a missing file fails the start
			want("Service", "ExecStart", installedBin+" "+s.command)
			want("Install", "WantedBy", "multi-user.target")
			if got := u.values("Service", "SystemCallFilter"); !slices.Equal(got, syscallFilter) {
				t.Errorf("SystemCallFilter: %q, want %q", got, syscallFilter)
			}
			for _, key := range []string{"DynamicUser", "ReadWritePaths", "PrivateNetwork", "ExecStartPre"} {
				if got := u.values("Service", key); got != nil {
					t.Errorf("[Service] %s=%q: not expected (what needs it?)", key, got)
				}
			}
		})
	}
}

// TestVerify runs `systemd-analyze verify` on copies of both units whose
// ExecStart is the shoal just built (verify checks that the binary
// exists), and wants no complaint: verify exits 0 on an unknown key or a
// bad value and only prints it. Then it runs systemd's offline security
// review, whose exposure score must stay at most maxExposure.
func TestVerify(t *testing.T) {
	t.Parallel()
	analyze := agenttest.ToolPath(t, "systemd-analyze")
	bin := needShoal(t)
	dir := t.TempDir()
	var paths []string
	for _, s := range specs {
		paths = append(paths, installCopy(t, dir, s.unit, bin, nil))
	}
	if out, err := runTool(t, analyze, append([]string{"verify"}, paths...)...); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The check can fail: a typo in a copy is reported.
	bad := installCopy(t, dir, specs[0].unit, bin, strings.NewReplacer("ProtectHome=yes", "ProtectHome=yess"))
	if out, _ := runTool(t, analyze, "verify", bad); !strings.Contains(out, "yess") {
		t.Errorf("systemd-analyze verify said nothing of ProtectHome=yess: %q", out)
	}

	for _, p := range paths {
		out, err := runTool(t, analyze, "security", "--offline=yes", "--no-pager", fmt.Sprintf("--threshold=%d", maxExposure), p)
		level := regexp.MustCompile(`Overall exposure level for \S+: (.*)`).FindStringSubmatch(out)
		if level == nil {
			t.Errorf("systemd-analyze security %s printed no exposure level:\n%s", filepath.Base(p), out)
			continue
		}
		t.Logf("%s: exposure %s", filepath.Base(p), level[1])
		if err != nil {
			t.Errorf("%s: exposure %s is above %d.%d: %v", filepath.Base(p), level[1], maxExposure/10, maxExposure%10, err)
		}
	}
}

// maxExposure bounds systemd-analyze security's exposure, in tenths (its
// --threshold unit): 1.4 with systemd 252; the rest is what the network
// access a peer-to-peer service needs costs.
const maxExposure = 20

// TestSysusers installs shoal.sysusers in an empty root, as the README
// says, and creates the user there.
func TestSysusers(t *testing.T) {
	t.Parallel()
	sysusers := agenttest.ToolPath(t, "systemd-sysusers")
	root := t.TempDir()
	conf, err := os.ReadFile("shoal.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	confDir := filepath.Join(root, "etc", "sysusers.d")
	if err := errors.Join(os.MkdirAll(confDir, 0o755),
		os.WriteFile(filepath.Join(confDir, "shoal.conf"), conf, 0o644)); err != nil {
		t.Fatal(err)
	}
	if out, err := runTool(t, sysusers, "--root="+root); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^shoal:x:\d+:\d+:[^:]*:/var/lib/shoal:\S*nologin$`).Match(passwd) {
		t.Errorf("etc/passwd has no user shoal without a shell:\n%s", passwd)
	}
}

// TestEnvFiles checks the example environment files: every variable, set
// or commented out, is a flag of its command (and not SHOAL_DATA_DIR,
// which the unit sets), and shoal starts with the ones set, flags for the
// test's ports and paths on top. Not parallel: it sets the environment.
func TestEnvFiles(t *testing.T) {
	bin := needShoal(t)
	for _, s := range specs {
		t.Run(s.command, func(t *testing.T) {
			b, err := os.ReadFile(s.envExample)
			if err != nil {
				t.Fatal(err)
			}
			vars, err := parseEnvFile(b)
			if err != nil {
				t.Fatalf("%s: %v", s.envExample, err)
			}
			flags := helpFlags(t, bin, s.command)
			active := 0
			for _, v := range vars {
				flagName, ok := strings.CutPrefix(v.name, "SHOAL_")
				flagName = strings.ToLower(strings.ReplaceAll(flagName, "_", "-"))
				switch {
				case !ok || !flags[flagName]:
					t.Errorf("%s: %s is no flag of shoal %s", s.envExample, v.name, s.command)
				case flagName == "data-dir":
					t.Errorf("%s: %s is the unit's to set (its StateDirectory)", s.envExample, v.name)
				}
				if v.active {
					t.Setenv(v.name, v.value)
					active++
				}
			}
			if active == 0 {
				t.Fatalf("%s sets no variable", s.envExample)
			}
			args := []string{s.command}
			if s.command == "tracker" {
				tokens := filepath.Join(t.TempDir(), "token")
				if err := os.WriteFile(tokens, []byte("env-file-test-token\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--token-file", tokens)
			}
			proc := agenttest.StartShoal(t, bin, args...)
			// SHOAL_LOG_FORMAT=json and SHOAL_UPSTREAM took effect.
			deadline := time.Now().Add(10 * time.Second)
			for {
				logs := proc.Logs()
				first, _, _ := strings.Cut(logs, "\n")
				if json.Valid([]byte(first)) && strings.Contains(logs, `"upstream":"https://registry.example"`) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no JSON log line with the upstream of %s:\n%s", s.envExample, logs)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestWithinUnitLimits runs a tracker and two agents under strace, with
// their p2p transport on 0.0.0.0 as the example environment files have
// it, pulls an image through each agent, restarts one and pulls again.
// Then it checks what they did against their unit: every system call is
// in the unit's SystemCallFilter (as systemd-analyze expands it), every
// socket family in RestrictAddressFamilies, no memory was mapped writable
// and executable (MemoryDenyWriteExecute), and nothing was written outside
// the data directories (ProtectSystem=strict with only the StateDirectory
// writable). systemd is not PID 1 on the test machines, so this is how the
// limits are tried without starting the units.
func TestWithinUnitLimits(t *testing.T) {
	t.Parallel()
	bin := needShoal(t)
	strace := agenttest.ToolPath(t, "strace")
	analyze := agenttest.ToolPath(t, "systemd-analyze")

	limits := map[string]unitLimits{}
	for _, s := range specs {
		u := readUnit(t, s.unit)
		limits[s.command] = unitLimits{
			filter:   u.values("Service", "SystemCallFilter"),
			syscalls: syscallSet(t, analyze, u.values("Service", "SystemCallFilter")),
			families: strings.Fields(strings.Join(u.values("Service", "RestrictAddressFamilies"), " ")),
		}
	}

	traces := t.TempDir()
	wrapper := filepath.Join(t.TempDir(), "shoal-traced")
	// -y names each descriptor's file; read and write buffers are not
	// printed (raw), so the traces stay small while paths print whole.
	script := fmt.Sprintf("#!/bin/sh\nexec %s -f -qq -y -s 4096 -e signal=none -e raw=%s -o %s/\"$1\".$$ %s \"$@\"\n",
		shellQuote(strace), strings.Join(rawSyscalls, ","), shellQuote(traces), shellQuote(bin))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	const token = "unit-limits-token"
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, LayerSize: 2 << 20, Seed: 4242})
	ref := origin.Push(t, img, "limits/app:v1")
	_, repo, _ := strings.Cut(ref, "/")
	tracker := agenttest.StartShoal(t, wrapper, "tracker", "--token", token, "--upstream", origin.URL,
		"--p2p-listen", "/ip4/0.0.0.0/tcp/0")
	procs := []*agenttest.Shoal{tracker}
	for range 2 {
		agent := agenttest.StartShoal(t, wrapper, "agent", "--upstream", origin.URL,
			"--tracker", tracker.URL, "--tracker-token", token, "--p2p-listen", "/ip4/0.0.0.0/tcp/0")
		procs = append(procs, agent)
		agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, agent.Addr+"/"+repo, nil)), img)
	}
	procs[1].Restart(t)
	agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, procs[1].Addr+"/"+repo, nil)), img)
	var dataDirs []string
	for _, p := range slices.Backward(procs) {
		_ = p.Stop() // under strace the exit status is strace's
		dataDirs = append(dataDirs, p.DataDir)
	}

	files, err := filepath.Glob(filepath.Join(traces, "*.*"))
	if err != nil || len(files) < len(procs)+1 { // one more for the restart
		t.Fatalf("traces %q (%v), want %d", files, err, len(procs)+1)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		command, _, _ := strings.Cut(filepath.Base(f), ".")
		lim, ok := limits[command]
		if !ok {
			t.Fatalf("trace %s of no unit's command", f)
		}
		got, err := readTrace(f, cwd)
		if err != nil {
			t.Fatal(err)
		}
		if !got.syscalls["openat"] || !got.families["AF_INET"] {
			t.Fatalf("%s: the trace saw no openat or no AF_INET socket: %d system calls", f, len(got.syscalls))
		}
		for name := range got.syscalls {
			if !lim.syscalls[name] {
				t.Errorf("%s: system call %s is not in SystemCallFilter=%q", filepath.Base(f), name, lim.filter)
			}
		}
		for fam := range got.families {
			if !slices.Contains(lim.families, fam) {
				t.Errorf("%s: a socket of family %s, not in RestrictAddressFamilies=%q", filepath.Base(f), fam, lim.families)
			}
		}
		for _, l := range got.writeExec {
			t.Errorf("%s: writable and executable memory (MemoryDenyWriteExecute): %s", filepath.Base(f), l)
		}
		for _, p := range got.written {
			if !slices.ContainsFunc(dataDirs, func(d string) bool { return within(p, d) }) {
				t.Errorf("%s: wrote %s, outside the data directories (ProtectSystem=strict)", filepath.Base(f), p)
			}
		}
		t.Logf("%s: %d system calls, families %v, %d paths written", filepath.Base(f), len(got.syscalls), keys(got.families), len(got.written))

	}
}

// rawSyscalls are traced without their buffers.
var rawSyscalls = []string{"read", "write", "pread64", "pwrite64", "readv", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg", "getrandom"}

type unitLimits struct {
	filter   []string // the SystemCallFilter lines
	syscalls map[string]bool
	families []string
}

// syscallSet is the set of system calls a unit's SystemCallFilter lines
// allow: the allow list less the "~" deny lists, every @group expanded by
// systemd-analyze syscall-filter.
func syscallSet(t *testing.T, analyze string, lines []string) map[string]bool {
	t.Helper()
	var allow, deny []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "~"); ok {
			deny = append(deny, strings.Fields(rest)...)
		} else {
			allow = append(allow, strings.Fields(l)...)
		}
	}
	groups := map[string][]string{}
	var expand func(names []string, into map[string]bool)
	expand = func(names []string, into map[string]bool) {
		for _, n := range names {
			if !strings.HasPrefix(n, "@") {
				into[n] = true
				continue
			}
			members, ok := groups[n]
			if !ok {
				out, err := runTool(t, analyze, "syscall-filter", n)
				if err != nil {
					t.Fatalf("systemd-analyze syscall-filter %s: %v\n%s", n, err, out)
				}
				for _, l := range strings.Split(out, "\n")[1:] {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
						members = append(members, l)
					}
				}
				groups[n] = members
			}
			expand(members, into)
		}
	}
	allowed, denied := map[string]bool{}, map[string]bool{}
	expand(allow, allowed)
	expand(deny, denied)
	for n := range denied {
		delete(allowed, n)
	}
	if len(allowed) < 100 {
		t.Fatalf("SystemCallFilter %q allows only %d system calls: is the expansion right?", lines, len(allowed))
	}
	return allowed
}

// trace is what one strace log shows a process did.
type trace struct {
	syscalls  map[string]bool
	families  map[string]bool
	writeExec []string // lines mapping memory writable and executable
	written   []string // paths created, opened for writing, renamed, removed
}

var (
	traceLine  = regexp.MustCompile(`^\d+\s+([a-z_][a-z0-9_]*)\((.*)$`)
	socketArgs = regexp.MustCompile(`^(AF_[A-Z0-9]+)`)
	// A descriptor as -y prints it: 7</dir/name>.
	fdPath = regexp.MustCompile(`^(?:\d+|AT_FDCWD)<(.*)>$`)
)

// pathArgs says which arguments of a call that modifies the file system
// are paths, each after the directory descriptor it is relative to (-1:
// none).
var pathArgs = map[string][][2]int{
	"mkdirat":     {{0, 1}},
	"unlinkat":    {{0, 1}},
	"renameat":    {{0, 1}, {2, 3}},
	"renameat2":   {{0, 1}, {2, 3}},
	"linkat":      {{2, 3}},
	"symlinkat":   {{1, 2}},
	"fchmodat":    {{0, 1}},
	"fchownat":    {{0, 1}},
	"mknodat":     {{0, 1}},
	"mkdir":       {{-1, 0}},
	"rmdir":       {{-1, 0}},
	"unlink":      {{-1, 0}},
	"rename":      {{-1, 0}, {-1, 1}},
	"link":        {{-1, 1}},
	"symlink":     {{-1, 1}},
	"chmod":       {{-1, 0}},
	"chown":       {{-1, 0}},
	"truncate":    {{-1, 0}},
	"creat":       {{-1, 0}},
	"utimensat":   {{0, 1}},
	"setxattr":    {{-1, 0}},
	"removexattr": {{-1, 0}},
}

// readTrace parses an strace -f -y log; relative paths are taken from cwd.
func readTrace(path, cwd string) (trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return trace{}, err
	}
	defer f.Close()
	tr := trace{syscalls: map[string]bool{}, families: map[string]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		m := traceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue // "<... resumed>" and the like; the call's first line named it
		}
		name, rest := m[1], m[2]
		tr.syscalls[name] = true
		args := splitArgs(rest)
		resolve := func(dirArg, pathArg int) {
			if pathArg >= len(args) {
				return
			}
			p, ok := unquote(args[pathArg])
			if !ok {
				return
			}
			if !filepath.IsAbs(p) {
				base := cwd
				if dirArg >= 0 && dirArg < len(args) {
					if d := fdPath.FindStringSubmatch(args[dirArg]); d != nil {
						base = d[1]
					}
				}
				p = filepath.Join(base, p)
			}
			tr.written = append(tr.written, filepath.Clean(p))
		}
		switch name {
		case "socket":
			if fam := socketArgs.FindString(rest); fam != "" {
				tr.families[fam] = true
			}
		case "mmap", "mprotect", "pkey_mprotect":
			if strings.Contains(rest, "PROT_WRITE") && strings.Contains(rest, "PROT_EXEC") {
				tr.writeExec = append(tr.writeExec, sc.Text())
			}
		case "openat", "open":
			flags := 2
			if name == "open" {
				flags = 1
			}
			if flags < len(args) &&
				(strings.Contains(args[flags], "O_WRONLY") || strings.Contains(args[flags], "O_RDWR") ||
					strings.Contains(args[flags], "O_CREAT") || strings.Contains(args[flags], "O_TRUNC")) {
				resolve(flags-2, flags-1)
			}
		default:
			for _, pa := range pathArgs[name] {
				resolve(pa[0], pa[1])
			}
		}
	}
	return tr, sc.Err()
}

// splitArgs splits strace's rendering of a call's arguments at the
// top-level commas, dropping the result (") = 3") or "<unfinished ...>".
func splitArgs(s string) []string {
	if i := strings.LastIndex(s, ") = "); i >= 0 {
		s = s[:i]
	} else if i := strings.LastIndex(s, " <unfinished ...>"); i >= 0 {
		s = s[:i]
	}
	var args []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '{' || c == '[' || c == '(' || c == '<':
			depth++
		case c == '}' || c == ']' || c == ')' || c == '>':
			depth--
		case c == ',' && depth == 0:
			args = append(args, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(args, strings.TrimSpace(s[start:]))
}

// unquote reads a C string as strace prints it; truncated ones ("..."
// after the quote) are refused.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// unit is a parsed unit file: section, then key, then its values in order.
type unit map[string]map[string][]string

func (u unit) values(section, key string) []string { return u[section][key] }

// parseUnit reads the unit file syntax these units use: [Section] lines,
// Key=Value lines, comments. A continuation line (a trailing backslash)
// is refused rather than misread.
func parseUnit(b []byte) (unit, error) {
	u := unit{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, `\`):
			return nil, fmt.Errorf("line %d: continuation lines are not supported", i+1)
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		case section == "":
			return nil, fmt.Errorf("line %d: %q before any section", i+1, line)
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: %q is no Key=Value", i+1, line)
			}
			key = strings.TrimSpace(key)
			u[section][key] = append(u[section][key], strings.TrimSpace(value))
		}
	}
	return u, nil
}

func readUnit(t *testing.T, name string) unit {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return u
}

// installCopy writes a copy of the unit name into dir with ExecStart
// running bin, edited further by r if r is not nil, and returns its path.
func installCopy(t *testing.T, dir, name, bin string, r *strings.Replacer) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, "\nExecStart="+installedBin+" ") {
		t.Fatalf("%s: no ExecStart=%s", name, installedBin)
	}
	s = strings.ReplaceAll(s, "\nExecStart="+installedBin+" ", "\nExecStart="+bin+" ")
	if r != nil {
		s = r.Replace(s)
		name = strings.TrimSuffix(name, ".service") + "-edited.service"
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// envVar is one assignment of an environment file, maybe commented out.
type envVar struct {
	name, value string
	active      bool
}

var (
	envAssign     = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	envCommented  = regexp.MustCompile(`^#(SHOAL_[A-Z0-9_]+)=(.*)$`)
	envQuotedFull = regexp.MustCompile(`^"(.*)"$`)
)

// parseEnvFile reads KEY=VALUE lines as systemd's EnvironmentFile= does
// for these files (no quoting beyond a pair of double quotes), and also
// the commented-out SHOAL_ assignments that document a setting.
func parseEnvFile(b []byte) ([]envVar, error) {
	var vars []envVar
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if m := envCommented.FindStringSubmatch(line); m != nil {
			vars = append(vars, envVar{name: m[1], value: m[2]})
			continue
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		m := envAssign.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d: %q is no KEY=VALUE", i+1, line)
		}
		value := m[2]
		if q := envQuotedFull.FindStringSubmatch(value); q != nil {
			value = q[1]
		}
		vars = append(vars, envVar{name: m[1], value: value, active: true})
	}
	return vars, nil
}

// helpFlags returns the long flags `shoal command --help` lists.
func helpFlags(t *testing.T, bin, command string) map[string]bool {
	t.Helper()
	out, err := runTool(t, bin, command, "--help")
	if err != nil {
		t.Fatalf("shoal %s --help: %v\n%s", command, err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(out, -1) {
		flags[m[1]] = true
	}
	if !flags["listen"] || !flags["data-dir"] {
		t.Fatalf("shoal %s --help lists no --listen or --data-dir:\n%s", command, out)
	}
	return flags
}

// runTool runs a command with a time bound and returns its combined
// output, trimmed.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%s timed out: %w", name, err)
	}
	return strings.TrimSpace(out.String()), err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
