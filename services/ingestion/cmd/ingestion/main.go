// Command ingestion runs the ingestion service: it validates, stores and
// fans out events published by the transcription pipeline.
package main

import (
	"context"
	"fmt"
	"time"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/config"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ratelimit"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/ingestion/internal/credits"
	"github.com/voxscriber/webhooks/services/ingestion/internal/grpcapi"
	"github.com/voxscriber/webhooks/services/ingestion/internal/historytier"
	"github.com/voxscriber/webhooks/services/ingestion/internal/index"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
	"github.com/voxscriber/webhooks/services/ingestion/internal/peers"
)

func main() { serve.Main("ingestion", run) }

// settings are what ingestion reads from its environment.
type settings struct {
	common                           config.Common
	addr, registryAddr, deliveryAddr string
	producerToken                    string
	maxPayload                       int
	retention                        time.Duration // live events and their list (DELIVERY_RETENTION)
	apiRate                          ratelimit.Rate
	databaseURL                      string
	historyRetention                 time.Duration
	idemWindow                       time.Duration // IDEMPOTENCY_WINDOW: the idempotency markers
}

// readSettings reads and checks the environment, every bad value at once,
// each error naming its variable.
func readSettings(env *config.Env) (settings, error) {
	s := settings{common: config.ReadCommon(env)}
	s.addr = env.String("INGESTION_ADDR", config.DefaultIngestionAddr)
	s.registryAddr = env.String("REGISTRY_ADDR", config.DefaultRegistryAddr)
	s.deliveryAddr = env.String("DELIVERY_ADDR", config.DefaultDeliveryAddr)
	s.producerToken = env.RequiredUnlessDev("PRODUCER_TOKEN", s.common.Dev, "anyone reaching INGESTION_ADDR could publish events for any account")
	s.maxPayload = env.Int("EVENT_MAX_PAYLOAD_BYTES", events.DefaultMaxPayloadBytes, 1024)
	s.retention = env.Duration("DELIVERY_RETENTION", config.DefaultDeliveryRetention) // idempotency keys of the old layout, events with no delivery
	s.apiRate = ratelimit.FromEnv(env)
	s.databaseURL = env.String("DATABASE_URL", config.DefaultDatabaseURL)
	s.historyRetention = env.Duration("HISTORY_RETENTION", config.DefaultHistoryRetention)
	s.idemWindow = env.Duration("IDEMPOTENCY_WINDOW", config.DefaultIdempotencyWindow)
	env.Check(config.CheckIdempotencyWindow(s.idemWindow, s.historyRetention))
	return s, env.Err()
}

func run(ctx context.Context) error {
	env := config.FromOS()
	st, err := readSettings(env)
	if err != nil {
		return err
	}
	common, addr, registryAddr, deliveryAddr := st.common, st.addr, st.registryAddr, st.deliveryAddr
	producerToken, maxPayload, retention, apiRate := st.producerToken, st.maxPayload, st.retention, st.apiRate
	databaseURL, historyRetention, idemWindow := st.databaseURL, st.historyRetention, st.idemWindow
	if err := common.CheckInternalCredential(); err != nil {
		return err
	}

	tel, err := telemetry.Start(ctx, "ingestion", common.LogLevel, common.MetricsAddr)
	if err != nil {
		return err
	}
	defer tel.Close()
	if producerToken == "" {
		tel.Logger.Warn("DEV_MODE: PRODUCER_TOKEN is unset, so anyone reaching INGESTION_ADDR can publish over gRPC (REST publishing is off). Never run like this in production.")
	}

	rdb, err := redisx.Open(ctx, common.RedisURL, redisx.DefaultOpenWait)
	if err != nil {
		return err
	}
	defer rdb.Close()
	grpcTLS, err := serve.LoadGRPCTLS(common.TLS, tel.Logger)
	if err != nil {
		return err
	}
	peerCreds := serve.Credentials{Token: common.InternalToken, TLS: grpcTLS}
	regConn, err := serve.DialWith(config.DialTarget(registryAddr), peerCreds)
	if err != nil {
		return fmt.Errorf("registry %s: %w", registryAddr, err)
	}
	defer regConn.Close()
	dlvConn, err := serve.DialWith(config.DialTarget(deliveryAddr), peerCreds)
	if err != nil {
		return fmt.Errorf("delivery %s: %w", deliveryAddr, err)
	}
	defer dlvConn.Close()
	// The history tier (PostgreSQL): archived events for reads and
	// idempotency, rollups for the stats. Never a start-up or readiness
	// dependency: unreachable, it is retried in the background. Ingestion
	// only reads it; delivery archives and runs its maintenance (and the
	// retention check against PARKED_RETENTION).
	hist, err := historytier.Open(ctx, databaseURL, history.Config{Retention: historyRetention, Logger: tel.Logger}, tel.Logger)
	if err != nil {
		return err
	}
	defer hist.Close()
	registry := registryclient.New(registryv1.NewRegistryInternalServiceClient(regConn), registryclient.DefaultTimeout)
	// Subscriber lists are cached; the registry's change feed invalidates them.
	subscribers := peers.NewCachedSubscribers(registry, peers.DefaultSubscribersTTL)
	changefeed.Watch(ctx, rdb, tel.Logger, subscribers.Invalidate)
	apiKeys := authn.NewCachingResolver(registry) // revoked keys refused within 1 s
	changefeed.Follow(ctx, rdb, tel.Logger, apiKeys)

	// An event whose fan-out is marked done never expires (the archiver
	// deletes it once history holds it); one whose publish never completed
	// (not acknowledged, never retried) expires after HISTORY_RETENTION,
	// which delivery's start-up keeps above PARKED_RETENTION + the
	// schedule's total + 1 day: its partial fan-out has ended by then.
	events := eventstore.New(rdb, retention)
	events.SetUnfinishedTTL(historyRetention)
	idx := index.New(rdb, retention, idemWindow)
	svc := ingest.New(ingest.Config{
		Store:           index.ListingStore{Store: events, Index: idx},
		Eraser:          events,
		Index:           idx,
		Subscribers:     subscribers,
		Scheduler:       peers.NewDelivery(deliveryv1.NewDeliveryServiceClient(dlvConn)),
		History:         hist,
		Rollups:         hist,
		Settings:        registry,
		Credits:         credits.New(rdb, 0),
		MaxPayloadBytes: maxPayload,
		TracerProvider:  tel.TracerProvider,
	})
	return serve.Service{
		Name:   ingestionv1.IngestionService_ServiceDesc.ServiceName,
		Addr:   addr,
		Logger: tel.Logger,
		Auth: authn.Config{
			Policy:        grpcapi.Policy(),
			Resolver:      apiKeys,
			Limiter:       ratelimit.New(rdb, apiRate),
			ProducerToken: producerToken,
			InternalToken: common.InternalToken,
			Callers:       grpcapi.Callers(),
			Identities:    common.TLS.Identities,
		},
		TLS:      grpcTLS,
		Register: grpcapi.New(svc, common.JaegerUIURL, tel.Logger).Register,
		Ready:    redisx.Ready(rdb),
		// Reported, never required: the gateway's /healthz shows it.
		Components: map[string]func(context.Context) error{config.HistoryHealthService: hist.Ping},
	}.Run(ctx)
}
