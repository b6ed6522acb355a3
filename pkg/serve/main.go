package serve

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"
)

// Main is the body of every service's main: it runs run with a context
// that SIGINT or SIGTERM cancels (which starts the graceful shutdown), and
// exits with status 1 and the error on stderr when run fails. With
// PPROF_ADDR set it also serves net/http/pprof there (profiling; never
// expose it publicly). Unless GOGC is set, the collector runs at
// GCPercent.
func Main(name string, run func(context.Context) error) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		go servePprof(addr)
	}
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// GCPercent is every service's GOGC when GOGC is unset. Their live heaps
// are small (the requests and batches in flight, caches of registry data),
// so letting the heap grow to 5× the live heap between collections instead
// of Go's default 2× costs little memory, and took the collector's work off
// the publish and delivery path: alternated with the default under single
// publishes, the gateway's CPU fell 13–22 % and REST's p50 and p99 about a
// quarter, and ingestion's and delivery's CPU per delivery fell too
// (bench/RESULTS.md). GOMEMLIMIT, which k8s/base sets below each
// container's memory limit, still makes it collect harder near that limit.
const GCPercent = 400

func servePprof(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintf(os.Stderr, "pprof on %s: %v\n", addr, err)
	}
}
