// Package testport picks TCP ports for the servers that tests start.
package testport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Free returns a TCP port on 127.0.0.1 that was free a moment ago and that
// no other test process holds. It is chosen at random below Linux's
// ephemeral range (32768 up), not by the kernel: a port the kernel hands
// out for listen :0 comes from the same range as the source ports of
// outgoing connections, so under load another connection may take it
// before the test's server binds it.
//
// A free port is not yet a reserved one: `go test ./...` runs many test
// binaries at once, and two of them could pick the same port between one's
// check and its server's bind (CI saw "bind: address already in use" from a
// suite whose port another package's suite had just been given). So every
// port handed out is also reserved, by an exclusive flock on a file named
// after it in a directory every test process shares, held until the
// process exits; no other process is handed that port meanwhile.
func Free() (int, error) {
	if port, ok := pick(0); ok {
		return port, nil
	}
	return 0, errors.New("testport: no free port below the ephemeral range")
}

// ephemeral is where Linux's ephemeral range starts (and where ports are
// no longer picked).
const lowest, ephemeral = 20000, 32768

// FreeWith returns a port p such that p and p+offset were both free a
// moment ago and are reserved for this process, both below the ephemeral
// range: a Redis Cluster node listens on its port and on port+10000 (the
// cluster bus).
func FreeWith(offset int) (int, error) {
	if port, ok := pick(offset); ok {
		return port, nil
	}
	return 0, errors.New("testport: no free pair of ports below the ephemeral range")
}

// pick tries random ports p in [lowest, ephemeral-offset) whose p and
// p+offset can both be reserved and listened on.
func pick(offset int) (int, bool) {
	span := ephemeral - offset - lowest
	if span <= 0 {
		return 0, false
	}
	for range 500 {
		port := lowest + rand.IntN(span)
		if !reserve(port) {
			continue
		}
		if offset != 0 && !reserve(port+offset) {
			continue // port stays reserved, unused: harmless
		}
		if free(port) && (offset == 0 || free(port+offset)) {
			return port, true
		}
	}
	return 0, false
}

var (
	mu   sync.Mutex
	held = map[int]*os.File{} // the reservations of this process, open until it exits
)

// reserve takes the port's lock file, unless this process or another
// already holds it.
func reserve(port int) bool {
	mu.Lock()
	defer mu.Unlock()
	if _, ok := held[port]; ok {
		return false
	}
	dir := filepath.Join(os.TempDir(), "voxscriber-testport")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return false
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return false
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid()) // who holds it, for a curious reader
	held[port] = f
	return true
}

func free(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
