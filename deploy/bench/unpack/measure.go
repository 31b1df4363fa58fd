package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

type measurement struct {
	secs   float64 // wall time, measured here
	cpu    float64 // user + system seconds of the process, 0 if unknown
	rssMiB float64 // peak resident set, 0 if unknown
}

// timed runs cmd under /usr/bin/time -v when it is there.
func timed(cmd *exec.Cmd, timeFile string) (measurement, error) {
	var m measurement
	useTime := false
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		useTime = true
		path, err := exec.LookPath(cmd.Path)
		if err != nil {
			return m, err
		}
		cmd = exec.Command("/usr/bin/time", append([]string{"-v", "-o", timeFile, path}, cmd.Args[1:]...)...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	m.secs = time.Since(start).Seconds()
	if err != nil {
		return m, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	if !useTime {
		return m, nil
	}
	b, err := os.ReadFile(timeFile)
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch k {
		case "Maximum resident set size (kbytes)":
			m.rssMiB = x / 1024
		case "User time (seconds)", "System time (seconds)":
			m.cpu += x
		}
	}
	return m, nil
}

type daemonStats struct {
	rssMiB float64 // peak resident set
	cpu    float64 // user + system seconds
}

// cpuSeconds returns the user and system time pid has used, from
// /proc/PID/stat in clock ticks of (on Linux, always) 1/100 s.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from after its ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// vmHWM returns pid's peak resident set in MiB, 0 if unknown.
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}
