package redisx

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// errorHook counts failed Redis commands as redis.client.errors
// (db.operation.name, error.type). redis.Nil (a missing key) is an answer,
// not an error. The counter comes from the global meter provider, so it is
// a no-op unless the process serves metrics.
type errorHook struct{ errors metric.Int64Counter }

func newErrorHook() errorHook {
	c, _ := otel.GetMeterProvider().Meter("github.com/voxscriber/webhooks/pkg/redisx").Int64Counter(
		"redis.client.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Redis commands that failed (redis.Nil excluded)"))
	return errorHook{errors: c}
}

func (h errorHook) count(ctx context.Context, op string, err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		return
	}
	kind := "redis"
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		kind = "timeout"
	case errors.Is(err, context.Canceled):
		kind = "canceled"
	case errors.As(err, &ne):
		kind = "network"
	}
	h.errors.Add(ctx, 1, metric.WithAttributes(
		attribute.String("db.operation.name", op), attribute.String("error.type", kind)))
}

func (h errorHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		h.count(ctx, "dial", err)
		return c, err
	}
}

func (h errorHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.count(ctx, cmd.Name(), err)
		return err
	}
}

func (h errorHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil && !errors.Is(err, redis.Nil) {
			h.count(ctx, "pipeline", err)
		}
		return err
	}
}
