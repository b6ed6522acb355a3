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

// redisCommandTime is the time Redis has spent in each command so far
// (INFO commandstats usec; a script's commands count under evalsha).
func redisCommandTime(b testing.TB, s *Suite) map[string]time.Duration {
	info, err := s.Redis.Client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]time.Duration{}
	for _, l := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(l, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(l, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				us, _ := strconv.ParseInt(v, 10, 64)
				out[name] = time.Duration(us) * time.Microsecond
			}
		}
	}
	return out
}

// topCommands formats the commands that took the most Redis time between
// two readings, per item, largest first.
func topCommands(before, after map[string]time.Duration, items, top int) string {
	type cmd struct {
		name string
		d    time.Duration
	}
	var cmds []cmd
	for name, a := range after {
		if d := a - before[name]; d > 0 {
			cmds = append(cmds, cmd{name, d / time.Duration(items)})
		}
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].d > cmds[j].d })
	var out []string
	for i, c := range cmds {
		if i == top {
			break
		}
		out = append(out, fmt.Sprintf("%s %.1f µs", c.name, float64(c.d.Nanoseconds())/1000))
	}
	return strings.Join(out, ", ")
}
