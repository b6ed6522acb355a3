package serve

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main is the body of every service's main: it runs run with a context
// that SIGINT or SIGTERM cancels (which starts the graceful shutdown), and
// exits with status 1 and the error on stderr when run fails.
func Main(name string, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
