// Package testport picks TCP ports for the servers that tests start.
package testport

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
)

// Free returns a TCP port on 127.0.0.1 that was free a moment ago. It is
// chosen at random below Linux's ephemeral range (32768 up), not by the
// kernel: a port the kernel hands out for listen :0 comes from the same
// range as the source ports of outgoing connections, so under load another
// connection may take it before the test's server binds it.
func Free() (int, error) {
	if port, ok := pick(0); ok {
		return port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeral is where Linux's ephemeral range starts (and where ports are
// no longer picked).
const lowest, ephemeral = 20000, 32768

// FreeWith returns a port p such that p and p+offset were both free a
// moment ago, both below the ephemeral range: a Redis Cluster node listens
// on its port and on port+10000 (the cluster bus).
func FreeWith(offset int) (int, error) {
	if port, ok := pick(offset); ok {
		return port, nil
	}
	return 0, errors.New("testport: no free pair of ports below the ephemeral range")
}

// pick tries random ports p in [lowest, ephemeral-offset) whose p and
// p+offset can both be listened on.
func pick(offset int) (int, bool) {
	span := ephemeral - offset - lowest
	if span <= 0 {
		return 0, false
	}
	for range 200 {
		port := lowest + rand.IntN(span)
		if free(port) && (offset == 0 || free(port+offset)) {
			return port, true
		}
	}
	return 0, false
}

func free(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
