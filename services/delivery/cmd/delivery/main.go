// Command delivery runs the delivery service: the Redis retry schedule, the
// workers that send signed webhook requests, and the DeliveryService API.
package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/config"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/delivery/internal/cache"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/grpcapi"
	"github.com/voxscriber/webhooks/services/delivery/internal/mailer"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
	"github.com/voxscriber/webhooks/services/delivery/internal/registryclient"
	"github.com/voxscriber/webhooks/services/delivery/internal/sender"
)

func main() { serve.Main("delivery", run) }

func run(ctx context.Context) error {
	// Configuration.
	env := config.FromOS()
	common := config.ReadCommon(env)
	addr := env.String("DELIVERY_ADDR", config.DefaultDeliveryAddr)
	registryAddr := env.String("REGISTRY_ADDR", config.DefaultRegistryAddr)
	schedule := env.Schedule("DELIVERY_RETRY_SCHEDULE", config.DefaultSchedule)
	timeout := env.Duration("DELIVERY_TIMEOUT", 5*time.Second)
	retention := env.Duration("DELIVERY_RETENTION", 168*time.Hour)
	workers := env.Int("DELIVERY_WORKERS", 512, 1)
	perEndpoint := env.Int("DELIVERY_ENDPOINT_CONCURRENCY", delivery.DefaultEndpointConcurrency, 1)
	smtpAddr := env.String("SMTP_ADDR", "")
	smtpFrom := env.String("SMTP_FROM", "webhooks@voxscriber.invalid")
	policy := ssrf.FromEnv(env)
	if err := env.Err(); err != nil {
		return err
	}
	if err := common.CheckInternalCredential(); err != nil {
		return err
	}

	// Telemetry, Redis, registry.
	tel, err := telemetry.Start(ctx, "delivery", common.LogLevel, common.MetricsAddr)
	if err != nil {
		return err
	}
	defer tel.Close()
	log := tel.Logger
	meter := telemetry.Meter("github.com/voxscriber/webhooks/services/delivery")
	rdb, err := redisx.Open(ctx, common.RedisURL, 30*time.Second)
	if err != nil {
		return err
	}
	defer rdb.Close()
	grpcTLS, err := serve.LoadGRPCTLS(common.TLS, log)
	if err != nil {
		return err
	}
	conn, err := serve.DialWith(config.DialTarget(registryAddr), serve.Credentials{Token: common.InternalToken, TLS: grpcTLS})
	if err != nil {
		return err
	}
	defer conn.Close()
	registry := registryv1.NewRegistryInternalServiceClient(conn)

	// Endpoint lookups are cached; the registry's change feed invalidates them.
	targets := registryclient.NewTargets(registry, registryclient.DefaultTTL)
	resumeKick := make(chan struct{}, 1)
	changefeed.Watch(ctx, rdb, log, func(account string) {
		targets.Invalidate(account)
		select { // an endpoint may have been enabled: look at the parked deliveries
		case resumeKick <- struct{}{}:
		default:
		}
	})

	// Notices of disabled endpoints: SMTP when SMTP_ADDR is set, else the log.
	var mail mailer.Mailer = mailer.Log{Logger: log}
	if smtpAddr != "" {
		mail = mailer.SMTP{Addr: smtpAddr, From: smtpFrom}
	}
	notices := mailer.NewAsync(mail, log, 5, 2*time.Second, 1000)

	// Delivery: queue, sender, dispatcher, worker, API.
	queue := redisqueue.New(rdb, retention)
	if err := delivery.ObserveSchedule(meter, time.Now, queue.Stats); err != nil {
		return err
	}
	send := sender.New(sender.Config{Timeout: timeout, Policy: policy})
	defer send.Close()
	dispatcher := delivery.NewDispatcher(
		delivery.Config{Retry: delivery.RetryPolicy{Schedule: schedule}, Timeout: timeout},
		delivery.Deps{
			Queue: delivery.Metered(queue, meter), Log: queue, Sender: send, EventAccounts: eventstore.New(rdb, retention),
			Targets: targets,
			Events:  cache.NewPayloads(cache.BatchPayloads(eventstore.New(rdb, retention).PayloadMany), 10_000, 64<<20, time.Minute),
			Tracer:  tel.TracerProvider.Tracer("github.com/voxscriber/webhooks/services/delivery"),
			Logger:  log,
			Stats:   queue, Registry: registryclient.Registry{C: registry}, Mailer: notices,
			Invalidate: targets.Invalidate,
		})
	worker := delivery.NewWorker(dispatcher, delivery.WorkerConfig{Slots: workers, EndpointConcurrency: perEndpoint})
	svc := delivery.NewService(dispatcher, worker.Wake)
	resumeCtx, stopResume := context.WithCancel(ctx)
	defer stopResume()
	go svc.RunResumer(resumeCtx, resumeKick, delivery.ResumeEvery)
	stopWake := queue.Listen(worker.Wake)
	worker.Start()
	log.Info("delivery configured", "schedule", fmt.Sprint(schedule), "timeout", timeout.String(),
		"workers", workers, "endpoint_concurrency", perEndpoint, "smtp", smtpAddr != "", "shards", redisqueue.Shards, "allow_http", policy.AllowHTTP, "allowed_cidrs", fmt.Sprint(policy.AllowedCIDRs))

	return serve.Service{
		Name:   deliveryv1.DeliveryService_ServiceDesc.ServiceName,
		Addr:   addr,
		Logger: log,
		Auth: authn.Config{
			Policy:        grpcapi.Policy(),
			Resolver:      &authn.CachingResolver{Next: registryclient.Resolver{C: registry}, TTL: 30 * time.Second},
			InternalToken: common.InternalToken,
			Callers:       grpcapi.Callers(),
			Identities:    common.TLS.Identities,
		},
		TLS: grpcTLS,
		Register: func(s *grpc.Server) {
			deliveryv1.RegisterDeliveryServiceServer(s, grpcapi.New(svc, common.JaegerUIURL))
		},
		Ready: func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		Drain: func(ctx context.Context) {
			stopWake()
			stopResume()
			worker.Drain(ctx)
			dispatcher.WaitBackground(ctx)
			notices.Close(ctx)
		},
	}.Run(ctx)
}
