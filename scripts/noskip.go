// Command noskip fails when a `go test -json` log (gotestsum --jsonfile)
// records a skipped test: in `make test` a skip means something the test
// needs was missing, which must fail the run rather than pass it quietly.
// Skips under -short belong to `make test-short`, which does not run this.
//
//	go run ./scripts/noskip.go test.json
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: noskip test.json")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "noskip:", err)
		os.Exit(2)
	}
	defer f.Close()

	output := map[string][]string{} // package + test -> its output lines
	var skipped []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Test == "" {
			continue // go build output, or a package-level line ("no test files" is a package skip)
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			if !strings.HasPrefix(e.Output, "=== ") {
				output[key] = append(output[key], e.Output)
			}
		case "skip":
			skipped = append(skipped, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "noskip:", err)
		os.Exit(2)
	}
	if len(skipped) == 0 {
		return
	}
	sort.Strings(skipped)
	fmt.Fprintf(os.Stderr, "\nFAIL: %d test(s) skipped; make test runs every test (skips are for make test-short):\n", len(skipped))
	for _, k := range skipped {
		fmt.Fprintf(os.Stderr, "SKIP %s\n", k)
		for _, l := range output[k] {
			fmt.Fprintf(os.Stderr, "    %s", l)
		}
	}
	os.Exit(1)
}
