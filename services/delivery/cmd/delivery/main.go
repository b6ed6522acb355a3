// Command delivery runs the delivery service: the Redis retry schedule, the
// workers that send signed webhook requests, and the DeliveryService API.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/config"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ratelimit"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/delivery/internal/archive"
	"github.com/voxscriber/webhooks/services/delivery/internal/cache"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/grpcapi"
	"github.com/voxscriber/webhooks/services/delivery/internal/mailer"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
	"github.com/voxscriber/webhooks/services/delivery/internal/sender"
	"github.com/voxscriber/webhooks/services/delivery/internal/targetcache"
)

func main() { serve.Main("delivery", run) }

// settings is what the delivery process reads from its environment (README,
// "Configuration"). Each default is a named constant of the package that
// uses it; every other tunable (caches, notice retries, Redis start-up wait)
// is that package's documented default, wired in run.
type settings struct {
	common       config.Common
	addr         string // DELIVERY_ADDR: where DeliveryService listens
	registryAddr string // REGISTRY_ADDR: where the registry is dialled
	ingestAddr   string // INGESTION_ADDR: where ingestion is dialled (operational events)
	schedule     []time.Duration
	timeout      time.Duration // per attempt
	retention    time.Duration // events, deliveries, endpoint success marks
	workers      int           // concurrent attempts in this process
	perEndpoint  int           // concurrent attempts to one endpoint in this process
	smtpAddr     string        // empty: notices are logged
	smtpFrom     string
	policy       ssrf.Policy
	proxy        *ssrf.Proxy    // DELIVERY_PROXY_URL: egress proxy of every webhook (nil: direct)
	opDelay      time.Duration  // OPERATIONAL_EVENT_DELAY: gathers a burst before its first event
	opWindow     time.Duration  // OPERATIONAL_EVENT_WINDOW: least time between two of one endpoint and type
	apiRate      ratelimit.Rate // API_RATE_LIMIT, API_RATE_BURST: per customer key, deployment-wide
	databaseURL  string         // DATABASE_URL: the history tier
	historyKeep  time.Duration  // HISTORY_RETENTION
	parkedKeep   time.Duration  // PARKED_RETENTION
	parkedMove   time.Duration  // PARKED_MOVE_AFTER: parked this long, a delivery moves to history
}

// readSettings reads the environment, reporting every bad value at once.
func readSettings(env *config.Env) (settings, error) {
	s := settings{
		common:       config.ReadCommon(env),
		addr:         env.String("DELIVERY_ADDR", config.DefaultDeliveryAddr),
		registryAddr: env.String("REGISTRY_ADDR", config.DefaultRegistryAddr),
		ingestAddr:   env.String("INGESTION_ADDR", config.DefaultIngestionAddr),
		schedule:     env.Schedule("DELIVERY_RETRY_SCHEDULE", config.DefaultSchedule),
		timeout:      env.Duration("DELIVERY_TIMEOUT", delivery.DefaultTimeout),
		retention:    env.Duration("DELIVERY_RETENTION", config.DefaultDeliveryRetention),
		workers:      env.Int("DELIVERY_WORKERS", delivery.DefaultWorkerSlots, 1),
		perEndpoint:  env.Int("DELIVERY_ENDPOINT_CONCURRENCY", delivery.DefaultEndpointConcurrency, 1),
		smtpAddr:     env.String("SMTP_ADDR", ""),
		smtpFrom:     env.String("SMTP_FROM", mailer.DefaultFrom),
		policy:       ssrf.FromEnv(env),
		proxy:        ssrf.ProxyFromEnv(env),
		opDelay:      env.Duration("OPERATIONAL_EVENT_DELAY", delivery.DefaultOpEventDelay),
		opWindow:     env.Duration("OPERATIONAL_EVENT_WINDOW", delivery.DefaultOpEventWindow),
		apiRate:      ratelimit.FromEnv(env),
		databaseURL:  env.String("DATABASE_URL", config.DefaultDatabaseURL),
		historyKeep:  env.Duration("HISTORY_RETENTION", config.DefaultHistoryRetention),
		parkedKeep:   env.Duration("PARKED_RETENTION", config.DefaultParkedRetention),
		parkedMove:   env.Duration("PARKED_MOVE_AFTER", redisqueue.DefaultParkedMoveAfter),
	}
	env.Check(config.CheckScheduleFits(s.schedule, s.retention))
	// The two 720h defaults cannot both hold (history must outlive parked
	// work by the schedule and a day): an unset HISTORY_RETENTION grows to
	// that minimum; a set one is checked as given.
	minHistory := s.parkedKeep + scheduleTotal(s.schedule) + 24*time.Hour
	if env.String("HISTORY_RETENTION", "") == "" && s.historyKeep < minHistory {
		s.historyKeep = minHistory
	}
	env.Check(history.CheckRetention(s.historyKeep, s.parkedKeep, scheduleTotal(s.schedule)))
	return s, env.Err()
}

func run(ctx context.Context) error {
	cfg, err := readSettings(config.FromOS())
	if err != nil {
		return err
	}
	if err := cfg.common.CheckInternalCredential(); err != nil {
		return err
	}

	// Telemetry, Redis, registry.
	tel, err := telemetry.Start(ctx, "delivery", cfg.common.LogLevel, cfg.common.MetricsAddr)
	if err != nil {
		return err
	}
	defer tel.Close()
	log := tel.Logger
	meter := telemetry.Meter("github.com/voxscriber/webhooks/services/delivery")
	rdb, err := redisx.Open(ctx, cfg.common.RedisURL, redisx.DefaultOpenWait)
	if err != nil {
		return err
	}
	defer rdb.Close()
	grpcTLS, err := serve.LoadGRPCTLS(cfg.common.TLS, log)
	if err != nil {
		return err
	}
	conn, err := serve.DialWith(config.DialTarget(cfg.registryAddr), serve.Credentials{Token: cfg.common.InternalToken, TLS: grpcTLS})
	if err != nil {
		return err
	}
	defer conn.Close()
	registry := registryclient.New(registryv1.NewRegistryInternalServiceClient(conn), registryclient.DefaultTimeout)
	// Operational events are published through ingestion, which owns events.
	ingestConn, err := serve.DialWith(config.DialTarget(cfg.ingestAddr), serve.Credentials{Token: cfg.common.InternalToken, TLS: grpcTLS})
	if err != nil {
		return fmt.Errorf("ingestion %s: %w", cfg.ingestAddr, err)
	}
	defer ingestConn.Close()

	// Endpoint lookups are cached; the registry's change feed invalidates them.
	targets := targetcache.New(registry, targetcache.DefaultTTL)
	resumeKick := make(chan struct{}, 1)
	changefeed.Watch(ctx, rdb, log, func(account string) {
		targets.Invalidate(account)
		select { // an endpoint may have been enabled: look at the parked deliveries
		case resumeKick <- struct{}{}:
		default:
		}
	})

	apiKeys := authn.NewCachingResolver(registry) // revoked keys refused within 1 s
	changefeed.Follow(ctx, rdb, log, apiKeys)

	// Notices of disabled endpoints: sent synchronously by the disabler,
	// which retries them durably.
	mail := newMailer(cfg, log)

	// Delivery: queue, sender, dispatcher, worker, API.
	queue := redisqueue.New(rdb, cfg.retention)
	queue.SetParkedMoveAfter(cfg.parkedMove)
	if err := delivery.ObserveSchedule(meter, time.Now, queue.Stats); err != nil {
		return err
	}
	if err := archive.ObserveBacklog(meter, time.Now, queue); err != nil {
		return err
	}
	send := sender.New(sender.Config{Timeout: cfg.timeout, Policy: cfg.policy, Proxy: cfg.proxy})
	defer send.Close()
	events := eventstore.New(rdb, cfg.retention)

	// History (PostgreSQL): never a start-up or readiness dependency (a
	// configuration error is). It is opened lazily (a first attempt of at
	// most 10 s, then retried in the background until it answers),
	// maintained here, and fed by the archiver; the backlog waits in Redis
	// meanwhile.
	store, err := history.OpenLazy(ctx, cfg.databaseURL, history.Config{
		Retention: cfg.historyKeep, ParkedRetention: cfg.parkedKeep, ScheduleTotal: scheduleTotal(cfg.schedule),
		Logger: log,
	}, history.LazyOptions{Maintain: archive.MaintainEvery, Logger: log})
	if err != nil {
		return err
	}
	defer store.Close()
	historyCtx, stopHistory := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHistory()
	tiers := &archive.Tiers{Q: queue, Events: events, Store: store}
	archiver := archive.New(queue, events, store, log)
	archiverDone := make(chan struct{})
	go func() { defer close(archiverDone); archiver.Run(historyCtx, archive.DefaultPoll) }()
	dispatcher := delivery.NewDispatcher(
		delivery.Config{Retry: delivery.RetryPolicy{Schedule: cfg.schedule}, Timeout: cfg.timeout,
			OpEventDelay: cfg.opDelay, OpEventWindow: cfg.opWindow},
		delivery.Deps{
			Queue: delivery.Metered(queue, meter), History: tiers, Archived: tiers,
			Sender: send, EventAccounts: events,
			Targets: targets,
			Events:  cache.NewPayloads(cache.BatchPayloads(events.PayloadMany), cache.DefaultPayloadConfig()),
			Tracer:  tel.TracerProvider.Tracer("github.com/voxscriber/webhooks/services/delivery"),
			Logger:  log,
			Stats:   queue, Registry: registry, Mailer: mail,
			Invalidate: targets.Invalidate,
			Limits:     redisqueue.NewLimits(rdb), // endpoint limits hold for the whole deployment
			OpEvents:   queue, SystemEvents: systemEvents{ingestionv1.NewIngestionInternalServiceClient(ingestConn)},
			Erase: queue,
		})
	worker := delivery.NewWorker(dispatcher, delivery.WorkerConfig{Slots: cfg.workers, EndpointConcurrency: cfg.perEndpoint})
	svc := delivery.NewService(dispatcher, worker)
	resumeCtx, stopResume := context.WithCancel(ctx)
	defer stopResume()
	go svc.RunResumer(resumeCtx, resumeKick, delivery.ResumeEvery)
	stopWake := queue.Listen(worker.Wake)
	worker.Start()
	stopDisabler := dispatcher.StartDisabler(ctx, delivery.DisablePoll)
	stopOpEvents := dispatcher.StartOpEvents(ctx, delivery.OpEventPoll)
	log.Info("delivery configured", "schedule", fmt.Sprint(cfg.schedule), "timeout", cfg.timeout.String(),
		"workers", cfg.workers, "endpoint_concurrency", cfg.perEndpoint, "smtp", cfg.smtpAddr != "", "shards", redisqueue.Shards,
		"allow_http", cfg.policy.AllowHTTP, "allowed_cidrs", fmt.Sprint(cfg.policy.AllowedCIDRs), "egress_proxy", cfg.proxy.String())

	return serve.Service{
		Name:   deliveryv1.DeliveryService_ServiceDesc.ServiceName,
		Addr:   cfg.addr,
		Logger: log,
		Auth: authn.Config{
			Policy:        grpcapi.Policy(),
			Resolver:      apiKeys,
			Limiter:       ratelimit.New(rdb, cfg.apiRate),
			InternalToken: cfg.common.InternalToken,
			Callers:       grpcapi.Callers(),
			Identities:    cfg.common.TLS.Identities,
		},
		TLS: grpcTLS,
		Register: func(s *grpc.Server) {
			deliveryv1.RegisterDeliveryServiceServer(s, grpcapi.New(svc, cfg.common.JaegerUIURL))
			deliveryv1.RegisterDeliveryInternalServiceServer(s, grpcapi.NewInternal(svc))
		},
		Ready:      redisx.Ready(rdb),
		Components: map[string]func(context.Context) error{config.HistoryHealthService: store.Ping}, // /healthz reports it
		Drain: func(ctx context.Context) {
			stopWake()
			stopResume()
			worker.Drain(ctx)
			stopDisabler(ctx)
			stopOpEvents(ctx)
			stopHistory()
			<-archiverDone // the store closes after the server stopped (deferred)
		},
	}.Run(ctx)
}

// scheduleTotal is the sum of the retry schedule's delays.
func scheduleTotal(s []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t
}

// newMailer sends notices over SMTP when SMTP_ADDR is set, else logs them.
func newMailer(cfg settings, log *slog.Logger) mailer.Mailer {
	if cfg.smtpAddr == "" {
		return mailer.Log{Logger: log}
	}
	return mailer.SMTP{Addr: cfg.smtpAddr, From: cfg.smtpFrom}
}

// systemEvents publishes operational events through ingestion's internal
// PublishSystemEvent; its errors are described, never passed on as status
// errors.
type systemEvents struct {
	c ingestionv1.IngestionInternalServiceClient
}

func (s systemEvents) PublishSystemEvent(ctx context.Context, accountID, eventType, endpointID, key string, data map[string]any) error {
	st, err := structpb.NewStruct(data)
	if err != nil {
		return fmt.Errorf("operational event data: %w", err)
	}
	_, err = s.c.PublishSystemEvent(ctx, &ingestionv1.PublishSystemEventRequest{
		AccountId: accountID, Type: eventType, Data: st, EndpointId: endpointID, IdempotencyKey: key,
	})
	if err != nil {
		s := status.Convert(err)
		return fmt.Errorf("ingestion PublishSystemEvent: %s: %s", s.Code(), s.Message())
	}
	return nil
}
