package testbed

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrParse is wrapped when /proc or /metrics text is not what we expect.
var ErrParse = errors.New("testbed: cannot parse")

// userHZ is the unit of utime and stime in /proc/PID/stat; it is fixed at
// 100 in the Linux ABI whatever the kernel's own tick rate.
const userHZ = 100

// ProcStats is a process's resource use so far.
type ProcStats struct {
	// PeakRSSBytes is VmHWM, the high-water mark of resident memory.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// CPUSeconds is user plus system time.
	CPUSeconds float64 `json:"cpu_seconds"`
}

func readProcStats(pid int) (ProcStats, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcStats{}, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStats{}, err
	}
	hwm, err := parseVmHWM(string(status))
	if err != nil {
		return ProcStats{}, err
	}
	cpu, err := parseCPU(string(stat))
	if err != nil {
		return ProcStats{}, err
	}
	return ProcStats{PeakRSSBytes: hwm, CPUSeconds: cpu}, nil
}

// parseVmHWM finds "VmHWM:   1234 kB" in /proc/PID/status.
func parseVmHWM(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%w: no VmHWM in /proc status", ErrParse)
}

// parseCPU reads utime and stime from /proc/PID/stat. The command name in
// parentheses may hold spaces and parentheses itself, so fields are counted
// from the last ')'.
func parseCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: /proc stat without a command name", ErrParse)
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state(0) ppid ... utime is field 14 of the whole
	// line, index 11 here; stime follows.
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: /proc stat has %d fields", ErrParse, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: /proc stat times %q %q", ErrParse, f[11], f[12])
	}
	return float64(utime+stime) / userHZ, nil
}

// readTxBytes returns how many bytes dev has sent, as seen from the
// network namespace of process pid: /proc/PID/net/dev shows that
// namespace's interfaces, so no process has to be started to read it.
func readTxBytes(pid int, dev string) (int64, error) {
	l, err := readLinkBytes(pid, dev)
	return l.Tx, err
}

// readLinkBytes reads what dev, in the network namespace of process pid,
// has received and sent so far.
func readLinkBytes(pid int, dev string) (LinkBytes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return LinkBytes{}, err
	}
	return parseNetDev(string(b), dev)
}

// parseNetDev reads the received and transmitted bytes of dev from
// /proc/net/dev text: "  eth0: rx_bytes rx_packets ... (8 receive
// fields) tx_bytes ...".
func parseNetDev(netdev, dev string) (LinkBytes, error) {
	for _, line := range strings.Split(netdev, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != dev {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			return LinkBytes{}, fmt.Errorf("%w: /proc net/dev line for %s has %d fields", ErrParse, dev, len(f))
		}
		rx, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || rx < 0 {
			return LinkBytes{}, fmt.Errorf("%w: rx bytes %q", ErrParse, f[0])
		}
		tx, err := strconv.ParseInt(f[8], 10, 64)
		if err != nil || tx < 0 {
			return LinkBytes{}, fmt.Errorf("%w: tx bytes %q", ErrParse, f[8])
		}
		return LinkBytes{Rx: rx, Tx: tx}, nil
	}
	return LinkBytes{}, fmt.Errorf("%w: no %s in /proc net/dev", ErrParse, dev)
}

// cpuTimes is the machine's CPU time in USER_HZ ticks, from the "cpu" line
// of /proc/stat: all of it, and the idle part (idle and iowait).
type cpuTimes struct{ total, idle uint64 }

func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPUTimes(string(b))
}

func parseCPUTimes(stat string) (cpuTimes, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("%w: /proc/stat cpu line %q", ErrParse, line)
	}
	var t cpuTimes
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("%w: /proc/stat cpu field %q", ErrParse, s)
		}
		// user nice system idle iowait irq softirq steal; guest time is
		// already inside user and nice.
		if i >= 8 {
			break
		}
		t.total += v
		if i == 3 || i == 4 {
			t.idle += v
		}
	}
	return t, nil
}

// busySeconds is the CPU time, all cores together, used between a and b.
func busySeconds(a, b cpuTimes) float64 {
	if b.total <= a.total || b.idle < a.idle {
		return 0
	}
	return float64((b.total-a.total)-(b.idle-a.idle)) / userHZ
}

// busy is the fraction of CPU time used between a and b.
func busy(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return busySeconds(a, b) * userHZ / float64(b.total-a.total)
}
