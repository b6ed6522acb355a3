//go:build race

package e2e

// Under `go test -race` (make test-race) TestMain builds the services with
// the race detector too, and StopAll fails a test whose service logs hold a
// race report.
func init() { raceEnabled = true }
