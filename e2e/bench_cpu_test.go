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

// procStat is the fields of /proc/<pid>/stat after the command name,
// which is in parentheses and may hold spaces: f[0] is field 3 (state),
// f[1] field 4 (ppid), f[11] and f[12] utime and stime, f[13] and f[14]
// cutime and cstime (of the children it waited for).
func procStat(pid string) []string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return nil
	}
	return f
}

// ticks sums fields of a procStat as a duration.
func ticks(f []string, idx ...int) time.Duration {
	var n int64
	for _, i := range idx {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		n += v
	}
	return time.Duration(n) * time.Second / clockTicks
}

// procCPU is the CPU time (user + system) a process has used so far.
func procCPU(pid string) time.Duration {
	f := procStat(pid)
	if f == nil {
		return 0
	}
	return ticks(f, 11, 12)
}

// treeCPU is the CPU time a process and its children have used so far,
// those that ended included: PostgreSQL's postmaster, its backends and
// its background workers.
func treeCPU(pid int) time.Duration {
	root := procStat(strconv.Itoa(pid))
	if root == nil {
		return 0
	}
	total := ticks(root, 11, 12, 13, 14)
	parent := strconv.Itoa(pid)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if f := procStat(e.Name()); f != nil && f[1] == parent {
			total += ticks(f, 11, 12)
		}
	}
	return total
}

// cpuSnapshot is the CPU time used so far by each part of a running suite:
// its services (all processes of a name together), its redis-server, its
// PostgreSQL server (all of it: the e2e suites share one, and benchmarks
// run one at a time) and this process (the receiver and the producers).
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
	out["redis-server"] = procCPU(infoField(b, s, "server", "process_id"))
	if s.history != nil {
		if pid, err := s.history.PID(); err == nil {
			out["postgresql"] = treeCPU(pid)
		}
	}
	return out
}

// spent is the time one part (a process, a Redis command) took per item.
type spent struct {
	name string
	d    time.Duration
}

// spentPer is what each part took between two readings of cumulative
// times, per item, largest first; parts that took nothing are left out.
func spentPer(before, after map[string]time.Duration, items int) []spent {
	var out []spent
	for name, a := range after {
		if d := a - before[name]; d > 0 {
			out = append(out, spent{name, d / time.Duration(items)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].d > out[j].d })
	return out
}

// perThousand formats the CPU each part used between two snapshots per
// 1,000 items, largest first, and returns the total.
func perThousand(before, after cpuSnapshot, items int) (string, time.Duration) {
	var out []string
	var total time.Duration
	for _, p := range spentPer(before, after, items) {
		out = append(out, fmt.Sprintf("%s %d ms", p.name, (p.d*1000).Milliseconds()))
		total += p.d * 1000
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
	var out []string
	for _, c := range spentPer(before, after, items) {
		if len(out) == top {
			break
		}
		out = append(out, fmt.Sprintf("%s %.1f µs", c.name, float64(c.d.Nanoseconds())/1000))
	}
	return strings.Join(out, ", ")
}
