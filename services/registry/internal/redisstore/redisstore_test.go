package redisstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/secretbox"
	"github.com/voxscriber/webhooks/services/registry/internal/redisstore"
	"github.com/voxscriber/webhooks/services/registry/internal/registry"
)

func TestSecretsKeyCheck(t *testing.T) {
	rs := redistest.Start(t)
	store := redisstore.New(rs.Client)
	ctx := context.Background()
	right, _ := secretbox.New([]byte("0123456789abcdef0123456789abcdef"))
	wrong, _ := secretbox.New([]byte("fedcba9876543210fedcba9876543210"))

	if err := registry.VerifySecretsKey(ctx, store, right); err != nil {
		t.Fatalf("first start: %v", err)
	}
	stored := rs.Client.Get(ctx, redisstore.KeyCheckKey).Val()
	if err := registry.VerifySecretsKey(ctx, store, right); err != nil {
		t.Fatalf("second start, same key: %v", err)
	}
	if got := rs.Client.Get(ctx, redisstore.KeyCheckKey).Val(); got != stored {
		t.Fatal("the check value was overwritten")
	}
	err := registry.VerifySecretsKey(ctx, store, wrong)
	if !errors.Is(err, registry.ErrSecretsKeyMismatch) {
		t.Fatalf("wrong key: %v", err)
	}
	if err.Error() != "SECRETS_KEY does not match the key that encrypted the stored endpoint secrets" {
		t.Fatalf("message %q", err)
	}
	if got := rs.Client.Get(ctx, redisstore.KeyCheckKey).Val(); got != stored {
		t.Fatal("a wrong key replaced the check value")
	}
}

func TestOpenSecretsKey(t *testing.T) {
	if _, _, err := registry.OpenSecretsKey("", false); err == nil {
		t.Fatal("empty SECRETS_KEY accepted outside dev mode")
	}
	box, dev, err := registry.OpenSecretsKey("", true)
	if err != nil || !dev || box == nil {
		t.Fatalf("dev key: %v %v", dev, err)
	}
	if _, dev, err := registry.OpenSecretsKey("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", true); err != nil || dev {
		t.Fatalf("explicit key in dev mode: %v %v", dev, err)
	}
	if _, _, err := registry.OpenSecretsKey("c2hvcnQ=", false); err == nil {
		t.Fatal("short key accepted")
	}
}
