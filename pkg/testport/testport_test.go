package testport

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// A port handed out is held: this process is not given it again, and
// another open of its lock file (what another test process would do)
// cannot take the lock.
func TestAPortHandedOutIsReservedUntilTheProcessExits(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if p < lowest || p >= ephemeral {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, ephemeral)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	for p := range seen {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "voxscriber-testport", strconv.Itoa(p)), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		_ = f.Close()
		if err == nil {
			t.Fatalf("port %d: a second open took the reservation's lock", p)
		}
	}
}

func TestFreeWithReservesBothPorts(t *testing.T) {
	p, err := FreeWith(10000)
	if err != nil {
		t.Fatal(err)
	}
	if reserve(p) || reserve(p+10000) {
		t.Fatalf("FreeWith(10000) = %d: a port of the pair was not reserved", p)
	}
}
