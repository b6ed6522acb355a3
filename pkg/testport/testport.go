// Package testport picks TCP ports for the servers that tests start.
package testport

import (
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
	const lo, hi = 20000, 32768
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
