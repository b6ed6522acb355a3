// Command registry serves accounts, API keys, webhook endpoints, their
// subscriptions, signing secrets and settings over gRPC.
package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/config"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ratelimit"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/registry/internal/audit"
	"github.com/voxscriber/webhooks/services/registry/internal/erasure"
	"github.com/voxscriber/webhooks/services/registry/internal/grpcapi"
	"github.com/voxscriber/webhooks/services/registry/internal/peers"
	"github.com/voxscriber/webhooks/services/registry/internal/redisstore"
	"github.com/voxscriber/webhooks/services/registry/internal/registry"
)

func main() { serve.Main("registry", run) }

func run(ctx context.Context) error {
	// 1. Configuration.
	env := config.FromOS()
	common := config.ReadCommon(env)
	addr := env.String("REGISTRY_ADDR", config.DefaultRegistryAddr)
	deliveryAddr := env.String("DELIVERY_ADDR", config.DefaultDeliveryAddr)    // erasure
	ingestionAddr := env.String("INGESTION_ADDR", config.DefaultIngestionAddr) // erasure
	adminToken := env.String("ADMIN_TOKEN", "")
	secretsKey := env.String("SECRETS_KEY", "")
	urlPolicy := ssrf.FromEnv(env)
	databaseURL := env.String("DATABASE_URL", config.DefaultDatabaseURL)
	historyRetention := env.Duration("HISTORY_RETENTION", config.DefaultHistoryRetention)
	apiRate := ratelimit.FromEnv(env)
	if err := env.Err(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if err := common.CheckInternalCredential(); err != nil {
		return err
	}

	// 2. Telemetry.
	tel, err := telemetry.Start(ctx, "registry", common.LogLevel, common.MetricsAddr)
	if err != nil {
		return err
	}
	defer tel.Close()
	log := tel.Logger

	// 3. The secrets key, checked against what Redis already holds.
	box, devKey, err := registry.OpenSecretsKey(secretsKey, common.Dev)
	if err != nil {
		return err
	}
	if devKey {
		log.Warn("DEV_MODE: SECRETS_KEY is unset, so endpoint secrets are sealed with the PUBLIC development key registry.DevSecretsKey; they are NOT protected at rest. Never run like this in production.")
	}
	rdb, err := redisx.Open(ctx, common.RedisURL, redisx.DefaultOpenWait)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := redisstore.New(rdb)
	if err := registry.VerifySecretsKey(ctx, store, box); err != nil {
		return err
	}

	grpcTLS, err := serve.LoadGRPCTLS(common.TLS, log)
	if err != nil {
		return err
	}

	// 4. Domain and gRPC edge.
	svc, err := registry.NewService(registry.Config{
		Store:     store,
		Box:       box,
		URLPolicy: urlPolicy,
	})
	if err != nil {
		return err
	}
	// The audit log's history tier (PostgreSQL): never a start-up or
	// readiness dependency; entries wait in Redis until it is reachable.
	hist, err := history.OpenLazy(ctx, databaseURL, history.Config{Retention: historyRetention, Logger: log}, history.LazyOptions{})
	if err != nil {
		return err
	}
	defer hist.Close()
	historyCtx, stopHistory := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHistory()
	mover := &audit.Mover{RDB: rdb, History: hist, Log: log}
	moverDone := make(chan struct{})
	go func() { defer close(moverDone); mover.Run(historyCtx) }()
	defer func() { stopHistory(); <-moverDone }()
	auditLog := &audit.Log{RDB: rdb, History: hist}

	// Erasure (DeleteAccount): the registry asks delivery and ingestion to
	// erase what they own; an interrupted one is finished in the background.
	peerCreds := serve.Credentials{Token: common.InternalToken, TLS: grpcTLS}
	dlvConn, err := serve.DialWith(config.DialTarget(deliveryAddr), peerCreds)
	if err != nil {
		return fmt.Errorf("delivery %s: %w", deliveryAddr, err)
	}
	defer dlvConn.Close()
	ingConn, err := serve.DialWith(config.DialTarget(ingestionAddr), peerCreds)
	if err != nil {
		return fmt.Errorf("ingestion %s: %w", ingestionAddr, err)
	}
	defer ingConn.Close()
	eraser := &erasure.Eraser{
		Store:     store,
		Delivery:  peers.Delivery{C: deliveryv1.NewDeliveryInternalServiceClient(dlvConn)},
		Ingestion: peers.Ingestion{C: ingestionv1.NewIngestionInternalServiceClient(ingConn)},
		History:   peers.History{L: hist},
		Log:       log,
	}
	go eraser.RunPending(historyCtx, time.Minute, time.Minute)

	// Customer keys: cached 1 s, flushed by the change feed (a revoke
	// announces the account).
	apiKeys := authn.NewCachingResolver(svc)
	changefeed.Follow(ctx, rdb, log, apiKeys)
	log.Info("registry configured", "addr", addr, "api_rate", apiRate.String(), "redis", redisx.Redact(common.RedisURL),
		"admin_api", adminToken != "", "endpoint_allow_http", urlPolicy.AllowHTTP, "endpoint_allowed_cidrs", len(urlPolicy.AllowedCIDRs))

	// 5. Serve until SIGINT/SIGTERM.
	return serve.Service{
		Name:   "registry",
		Addr:   addr,
		Logger: log,
		Auth: authn.Config{
			Policy:        grpcapi.Policy(),
			Resolver:      apiKeys,
			Limiter:       ratelimit.New(rdb, apiRate),
			AdminToken:    adminToken,
			InternalToken: common.InternalToken,
			Callers:       grpcapi.Callers(),
			Identities:    common.TLS.Identities,
		},
		TLS:        grpcTLS,
		Register:   func(g *grpc.Server) { grpcapi.Register(g, svc, grpcapi.Extras{Audit: auditLog, Eraser: eraser}) },
		Ready:      redisx.Ready(rdb),
		Components: map[string]func(context.Context) error{config.HistoryHealthService: hist.Ping}, // /healthz reports it
	}.Run(ctx)
}
