// Package serve runs a gRPC service the same way in every binary of the
// suite: otelgrpc tracing, authentication, one translation of domain errors
// to status codes, grpc.health.v1 tied to the service's dependencies,
// reflection, and graceful shutdown on context cancellation (health goes
// NOT_SERVING, in-flight work drains, then GracefulStop with a hard stop).
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/authn"
)

// Service describes one gRPC service process.
type Service struct {
	Name     string
	Addr     string
	Logger   *slog.Logger
	Auth     authn.Config
	Register func(*grpc.Server)
	// Ready reports whether dependencies answer (e.g. Redis PING). Health is
	// SERVING only while it returns nil.
	Ready func(context.Context) error
	// Components are optional dependencies reported over grpc.health.v1
	// under their own service names (SERVING while the func returns nil),
	// checked with Ready; they never change the service's own status.
	Components map[string]func(context.Context) error
	// Drain runs after health turns NOT_SERVING and before the server
	// stops: background workers finish or hand back their work here.
	Drain func(context.Context)
	// ShutdownTimeout bounds Drain plus GracefulStop (default 15s).
	ShutdownTimeout time.Duration
	// Listener, when set, is used instead of listening on Addr (tests).
	Listener net.Listener
	// TLS, when set, serves gRPC over TLS; with a CA it is mutual TLS and
	// internal methods are authorised by the peer certificate too
	// (Auth.Callers).
	TLS *TLS
}

// NewServer builds the grpc.Server with the suite's interceptors and
// registers the service, health and reflection.
func (s Service) NewServer() (*grpc.Server, *health.Server) {
	auth := s.Auth
	opts := []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler())}
	if s.TLS != nil {
		opts = append(opts, grpc.Creds(s.TLS.ServerCredentials()))
		auth.MutualTLS = s.TLS.Mutual()
	}
	srv := grpc.NewServer(append(opts,
		grpc.ChainUnaryInterceptor(auth.Unary(), s.errors()),
		grpc.ChainStreamInterceptor(auth.Stream()),
	)...)
	s.Register(srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}

func (s Service) errors() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, apierr.Status(ctx, s.Logger, err)
		}
		return resp, nil
	}
}

// Run serves until ctx is cancelled, then shuts down gracefully.
func (s Service) Run(ctx context.Context) error {
	lis := s.Listener
	if lis == nil {
		var err error
		lis, err = net.Listen("tcp", s.Addr)
		if err != nil {
			return fmt.Errorf("%s: listen %s: %w", s.Name, s.Addr, err)
		}
	}
	srv, hs := s.NewServer()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go s.watchHealth(watchCtx, hs)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	s.Logger.Info("serving", "addr", lis.Addr().String())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.Logger.Info("shutting down")
	stopWatch()
	hs.Shutdown() // every service NOT_SERVING: load balancers stop sending
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if s.Drain != nil {
		s.Drain(sctx)
	}
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		srv.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	s.Logger.Info("stopped")
	return nil
}

func (s Service) watchHealth(ctx context.Context, hs *health.Server) {
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if s.Ready != nil {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := s.Ready(rctx); err != nil {
				st = healthpb.HealthCheckResponse_NOT_SERVING
				if last != st {
					s.Logger.Warn("not ready", "error", err.Error())
				}
			}
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		if st != last {
			hs.SetServingStatus("", st)
			hs.SetServingStatus(s.Name, st)
			last = st
		}
		for name, check := range s.Components {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			cst := healthpb.HealthCheckResponse_SERVING
			if err := check(cctx); err != nil {
				cst = healthpb.HealthCheckResponse_NOT_SERVING
			}
			cancel()
			if ctx.Err() != nil {
				return
			}
			hs.SetServingStatus(name, cst)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// Credentials are what a service presents when it calls another: the
// internal token and, with mutual TLS, its certificate.
type Credentials struct {
	Token string
	TLS   *TLS // nil: plaintext
}

// Dial opens a client connection to another service of the suite with
// tracing and, when token is set, the internal credential, in plaintext.
// Calls are spread round-robin over every address the target resolves to
// (on Kubernetes, a headless Service lists each replica).
func Dial(target, token string) (*grpc.ClientConn, error) {
	return DialWith(target, Credentials{Token: token})
}

// DialWith is Dial with TLS when c.TLS is set: the server must present a
// certificate for the dialed host chaining to the CA, and this service's
// certificate is presented to it.
func DialWith(target string, c Credentials) (*grpc.ClientConn, error) {
	creds := insecureCreds()
	if c.TLS != nil {
		creds = c.TLS.ClientCredentials()
	}
	return grpc.NewClient(target,
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithPerRPCCredentials(authn.Token(c.Token)),
	)
}
