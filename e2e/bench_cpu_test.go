package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on Linux for every architecture Go supports here).
const clockTicks = 100

// procCPU is the CPU time (user + system) a process has used so far.
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks
}

// cpuSnapshot is the CPU time used so far by each part of a running suite:
// its services (all processes of a name together), its redis-server and
// this process (the receiver and the producers).
type cpuSnapshot map[string]time.Duration

func (s *Suite) cpu(b testing.TB) cpuSnapshot {
	out := cpuSnapshot{"bench (receiver, producers)": procCPU("self")}
	s.mu.Lock()
	for name, cmds := range s.procs {
		for _, c := range cmds {
			if c.Process != nil && c.ProcessState == nil {
				out[name] += procCPU(strconv.Itoa(c.Process.Pid))
			}
		}
	}
	s.mu.Unlock()
	info, err := s.Redis.Client.Info(context.Background(), "server").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if pid, ok := strings.CutPrefix(l, "process_id:"); ok {
			out["redis-server"] = procCPU(pid)
		}
	}
	return out
}

// perThousand formats the CPU each part used between two snapshots per
// 1,000 items, largest first, and returns the total.
func perThousand(before, after cpuSnapshot, items int) (string, time.Duration) {
	type part struct {
		name string
		d    time.Duration
	}
	var parts []part
	var total time.Duration
	for name, a := range after {
		d := (a - before[name]) * 1000 / time.Duration(items)
		parts = append(parts, part{name, d})
		total += d
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].d > parts[j].d })
	var out []string
	for _, p := range parts {
		out = append(out, fmt.Sprintf("%s %d ms", p.name, p.d.Milliseconds()))
	}
	return strings.Join(out, ", "), total
}
