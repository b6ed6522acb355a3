// Command gateway serves the public REST API, /openapi.json, /healthz and the
// dashboard in front of the registry, ingestion and delivery services.
package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/voxscriber/webhooks/pkg/config"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/gateway/internal/gateway"
)

func main() { serve.Main("gateway", run) }

func run(ctx context.Context) error {
	env := config.FromOS()
	common := config.ReadCommon(env)
	addr := env.String("GATEWAY_ADDR", config.DefaultGatewayAddr)
	registryAddr := env.String("REGISTRY_ADDR", config.DefaultRegistryAddr)
	ingestionAddr := env.String("INGESTION_ADDR", config.DefaultIngestionAddr)
	deliveryAddr := env.String("DELIVERY_ADDR", config.DefaultDeliveryAddr)
	if err := env.Err(); err != nil {
		return err
	}

	tel, err := telemetry.Start(ctx, "gateway", common.LogLevel, common.MetricsAddr)
	if err != nil {
		return err
	}
	defer tel.Close()
	log := tel.Logger

	var b gateway.Backends
	// The gateway forwards the caller's own credential; it holds no token.
	for _, d := range []struct {
		conn **grpc.ClientConn
		addr string
	}{{&b.Registry, registryAddr}, {&b.Ingestion, ingestionAddr}, {&b.Delivery, deliveryAddr}} {
		cc, err := serve.Dial(config.DialTarget(d.addr), "")
		if err != nil {
			return err
		}
		defer cc.Close()
		*d.conn = cc
	}
	handler, err := gateway.New(ctx, b)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("serving", "addr", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
