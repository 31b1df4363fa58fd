package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is wrapped when the machine cannot run the bed at all (not
// root, no network namespaces); tests skip on it.
var ErrUnavailable = errors.New("testbed: network namespaces unavailable")

// ifname is every host's own end of its veth pair, inside its namespace.
const ifname = "eth0"

// Host is one namespace on the bridge.
type Host struct {
	// Name is short and unique in the bed: origin, tracker, h001, ...
	Name string
	// NS is the network namespace, as `ip netns` names it.
	NS string
	// IP is the host's address on the bridge.
	IP netip.Addr
	// port is the bridge-side end of the host's veth pair.
	port string
}

// run runs ip or tc (or anything else) and returns its error with its
// output, which is where iproute2 says what went wrong.
func run(ctx context.Context, name string, args ...string) error {
	_, err := runCPU(ctx, name, args...)
	return err
}

// runCPU is run that also returns the CPU time (user and system) the
// command used.
func runCPU(ctx context.Context, name string, args ...string) (time.Duration, error) {
	return runInput(ctx, nil, name, args...)
}

// runInput is runCPU with stdin read from in (nil: none).
func runInput(ctx context.Context, in io.Reader, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	var cpu time.Duration
	if ps := cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	if err != nil {
		return cpu, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return cpu, nil
}

// Probe checks that this process may create network namespaces, bridges,
// veth pairs and HTB qdiscs, with a throw-away namespace named after
// prefix. It wraps ErrUnavailable when the machine cannot (not root, no
// namespaces) and returns a plain error when something else is missing.
func Probe(ctx context.Context, prefix string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (euid %d)", ErrUnavailable, os.Geteuid())
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("testbed: %s (iproute2) not found: %w", tool, err)
		}
	}
	ns := prefix + "probe"
	_ = deleteNS(ctx, ns)
	if err := run(ctx, "ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer deleteNS(context.WithoutCancel(ctx), ns)
	steps := [][]string{
		{"ip", "-n", ns, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"tc", "-n", ns, "qdisc", "add", "dev", "v0", "root", "handle", "1:", "htb", "default", "10"},
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("testbed: probe: %w", err)
		}
	}
	return nil
}

// listNS returns the network namespaces whose names start with prefix.
func listNS(ctx context.Context, prefix string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// Lines look like "name (id: 3)" or just "name".
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// deleteNS kills whatever still runs in ns and deletes it; the veth pairs
// and the bridge inside go with it.
func deleteNS(ctx context.Context, ns string) error {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return run(ctx, "ip", "netns", "del", ns)
}

// htb caps what leaves dev in namespace ns at rate bytes/s, with a queue of
// queue's worth of bytes at that rate (kernel default if zero).
func htb(ctx context.Context, ns, dev string, rate int64, queue time.Duration) error {
	bits := strconv.FormatInt(rate*8, 10) + "bit"
	// HTB must be allowed to send a whole GSO segment (up to 64 KiB on a
	// veth) at once, and at high rates a timer tick's worth of bytes, or it
	// falls short of the rate.
	burst := strconv.FormatInt(max(rate/50, 128<<10), 10)
	if err := run(ctx, "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "10"); err != nil {
		return err
	}
	if err := run(ctx, "tc", "-n", ns, "class", "replace", "dev", dev, "parent", "1:", "classid", "1:10",
		"htb", "rate", bits, "ceil", bits, "burst", burst, "cburst", burst); err != nil {
		return err
	}
	if queue == 0 {
		return nil
	}
	// Never below a few full-size GSO segments, or TCP cannot fill the link.
	limit := max(int64(queue.Seconds()*float64(rate)), 256<<10)
	return run(ctx, "tc", "-n", ns, "qdisc", "replace", "dev", dev, "parent", "1:10", "handle", "10:", "bfifo", "limit", strconv.FormatInt(limit, 10))
}

// addHost creates h's namespace, its veth pair (made in the bridge
// namespace, one end moved into h's), its address and both caps.
func addHost(ctx context.Context, bridgeNS string, h Host, up, down int64, queue time.Duration) error {
	steps := [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "-n", bridgeNS, "link", "add", h.port, "type", "veth", "peer", "name", ifname, "netns", h.NS},
		{"ip", "-n", bridgeNS, "link", "set", h.port, "master", "br0", "up"},
		{"ip", "-n", h.NS, "addr", "add", h.IP.String() + "/16", "dev", ifname},
		{"ip", "-n", h.NS, "link", "set", ifname, "up"},
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	if err := htb(ctx, h.NS, ifname, up, queue); err != nil {
		return err
	}
	return htb(ctx, bridgeNS, h.port, down, queue)
}

// macOf returns the hardware address of h's interface.
func macOf(ctx context.Context, h Host) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", h.NS, "-j", "link", "show", "dev", ifname).Output()
	if err != nil {
		return "", fmt.Errorf("testbed: link of %s: %w", h.Name, err)
	}
	return parseMAC(out)
}

// parseMAC reads the address out of `ip -j link show dev X`.
func parseMAC(js []byte) (string, error) {
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(js, &links); err != nil {
		return "", fmt.Errorf("testbed: ip -j link: %w", err)
	}
	if len(links) != 1 || links[0].Address == "" {
		return "", fmt.Errorf("testbed: ip -j link: want one link with an address, got %s", bytes.TrimSpace(js))
	}
	return links[0].Address, nil
}

// neighborBatch is the `ip -batch` input that makes every host of all but
// self a permanent neighbor.
func neighborBatch(self Host, all []Host, macs map[string]string) string {
	var sb strings.Builder
	for _, h := range all {
		if h.Name != self.Name {
			fmt.Fprintf(&sb, "neigh replace %s lladdr %s dev %s nud permanent\n", h.IP, macs[h.Name], ifname)
		}
	}
	return sb.String()
}

// nsDialer dials from inside a named network namespace: a socket belongs to
// the namespace of the thread that creates it, and stays usable from any
// thread afterwards.
type nsDialer struct{ ns string }

func (d nsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	// A goroutine of its own, so that if the thread cannot be switched back
	// it ends locked and the runtime throws the thread away.
	go func() {
		runtime.LockOSThread()
		conn, err, restored := d.dialIn(ctx, network, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

func (d nsDialer) dialIn(ctx context.Context, network, addr string) (conn net.Conn, err error, restored bool) {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("testbed: own namespace: %w", err), true
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + d.ns)
	if err != nil {
		return nil, fmt.Errorf("testbed: namespace %s: %w", d.ns, err), true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("testbed: enter %s: %w", d.ns, err), true
	}
	// With an IP literal the dialer creates the socket on this goroutine,
	// hence on this thread.
	conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
	restored = unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil
	return conn, err, restored
}
