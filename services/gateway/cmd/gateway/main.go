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
	publicCert := env.String("GATEWAY_TLS_CERT_FILE", "")
	publicKey := env.String("GATEWAY_TLS_KEY_FILE", "")
	if (publicCert == "") != (publicKey == "") {
		env.Fail("GATEWAY_TLS_KEY_FILE", publicKey, errors.New("set GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE together"))
	}
	if err := env.Err(); err != nil {
		return err
	}

	tel, err := telemetry.Start(ctx, "gateway", common.LogLevel, common.MetricsAddr)
	if err != nil {
		return err
	}
	defer tel.Close()
	log := tel.Logger

	grpcTLS, err := serve.LoadGRPCTLS(common.TLS, log)
	if err != nil {
		return err
	}
	var b gateway.Backends
	// The gateway forwards the caller's own credential; it holds no token,
	// and its certificate is no caller of any internal method.
	for _, d := range []struct {
		conn **grpc.ClientConn
		addr string
	}{{&b.Registry, registryAddr}, {&b.Ingestion, ingestionAddr}, {&b.Delivery, deliveryAddr}} {
		cc, err := serve.DialWith(config.DialTarget(d.addr), serve.Credentials{TLS: grpcTLS})
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
	if publicCert != "" { // HTTPS, the certificate re-read when its files change
		public, err := serve.LoadTLS(serve.TLSFiles{Cert: publicCert, Key: publicKey, Logger: log})
		if err != nil {
			return err
		}
		srv.TLSConfig = public.ServerConfig()
		go func() { errc <- srv.ListenAndServeTLS("", "") }()
	} else {
		go func() { errc <- srv.ListenAndServe() }()
	}
	log.Info("serving", "addr", addr, "tls", publicCert != "")
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
