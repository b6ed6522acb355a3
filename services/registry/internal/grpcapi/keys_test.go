package grpcapi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/services/registry/internal/registry"
)

func (h *harness) listKeys(key string) []*registryv1.ApiKey {
	h.t.Helper()
	resp, err := h.api.ListApiKeys(ctx(h.t), &registryv1.ListApiKeysRequest{}, as(key))
	if err != nil {
		h.t.Fatalf("ListApiKeys: %v", err)
	}
	return resp.GetApiKeys()
}

func (h *harness) newKey(key, name string) *registryv1.CreateApiKeyResponse {
	h.t.Helper()
	resp, err := h.api.CreateApiKey(ctx(h.t), &registryv1.CreateApiKeyRequest{Name: name}, as(key))
	if err != nil {
		h.t.Fatalf("CreateApiKey: %v", err)
	}
	return resp
}

func TestACreatedKeyIsShownOnceAndListedWithoutItBesideTheAccountsFirstKey(t *testing.T) {
	h := newHarness(t)
	_, first := h.account("Acme")
	h.clock.Advance(time.Millisecond) // lists are oldest first
	created := h.newKey(first, "  CI deploys ")
	second := created.GetKey()
	k := created.GetApiKey()
	if !strings.HasPrefix(second, "vsk_") || second == first {
		t.Fatalf("new key %q", second)
	}
	if k.GetName() != "CI deploys" || k.GetPrefix() != second[:12] || !strings.HasPrefix(k.GetId(), "key_") || k.GetCreateTime() == nil {
		t.Fatalf("created key %v", k)
	}
	if _, err := h.api.GetSettings(ctx(t), &registryv1.GetSettingsRequest{}, as(second)); err != nil {
		t.Fatalf("the new key does not work: %v", err)
	}

	list := h.listKeys(second)
	if len(list) != 2 {
		t.Fatalf("listed %v, want the first key and the new one", list)
	}
	if list[0].GetPrefix() != first[:12] || list[0].GetName() != registry.FirstKeyName || list[0].GetId() != authn.KeyID(authn.HashKey(first)) {
		t.Fatalf("first listed %v, want the account's first key", list[0])
	}
	if list[1].GetId() != k.GetId() {
		t.Fatalf("second listed %v, want %v", list[1], k)
	}
	raw, _ := protojson.Marshal(&registryv1.ListApiKeysResponse{ApiKeys: list})
	for _, secret := range []string{first, second, authn.HashKey(first), authn.HashKey(second)} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("the list %s shows a key or its hash", raw)
		}
	}
	// Both were used (the interceptor resolved them): last use is set.
	for _, k := range list {
		if k.GetLastUsedTime() == nil {
			t.Errorf("key %s: no last use after being used", k.GetId())
		}
	}
	for _, rk := range h.keys() {
		if strings.Contains(dump(t, h, rk), second) {
			t.Fatalf("plaintext API key in %s", rk)
		}
	}
}

func TestKeyNamesAreRequiredAndBounded(t *testing.T) {
	h := newHarness(t)
	_, key := h.account("Acme")
	for _, name := range []string{"", "   ", strings.Repeat("n", registry.MaxKeyNameLen+1)} {
		_, err := h.api.CreateApiKey(ctx(t), &registryv1.CreateApiKeyRequest{Name: name}, as(key))
		wantInvalid(t, err, "name")
	}
}

func TestARevokedKeyIsRefusedAndTheLastKeyCannotBeRevoked(t *testing.T) {
	h := newHarness(t)
	_, first := h.account("Acme")
	second := h.newKey(first, "second")

	if _, err := h.api.DeleteApiKey(ctx(t), &registryv1.DeleteApiKeyRequest{Id: authn.KeyID(authn.HashKey(first))}, as(second.GetKey())); err != nil {
		t.Fatal(err)
	}
	_, err := h.api.GetSettings(ctx(t), &registryv1.GetSettingsRequest{}, as(first))
	grpctest.CheckCode(t, err, codes.Unauthenticated, "revoked")
	_, err = h.internal.Authenticate(ctx(t), &registryv1.AuthenticateRequest{ApiKey: first})
	grpctest.CheckCode(t, err, codes.NotFound, "revoked")
	if n := h.redis.Client.Exists(context.Background(), "wh:apikey:"+authn.HashKey(first)).Val(); n != 0 {
		t.Errorf("the revoked key's lookup entry is still there")
	}

	_, err = h.api.DeleteApiKey(ctx(t), &registryv1.DeleteApiKeyRequest{Id: second.GetApiKey().GetId()}, as(second.GetKey()))
	grpctest.CheckCode(t, err, codes.FailedPrecondition, "last key")
	if got := h.listKeys(second.GetKey()); len(got) != 1 || got[0].GetId() != second.GetApiKey().GetId() {
		t.Fatalf("after the refused revoke: %v", got)
	}
	_, err = h.api.DeleteApiKey(ctx(t), &registryv1.DeleteApiKeyRequest{Id: authn.KeyID(authn.HashKey(first))}, as(second.GetKey()))
	grpctest.RequireCode(t, err, codes.NotFound)
}

func TestAnAccountNeverSeesOrRevokesAnotherAccountsKeys(t *testing.T) {
	h := newHarness(t)
	_, a := h.account("A")
	_, b := h.account("B")
	bKey := h.newKey(b, "b's second")
	for _, k := range h.listKeys(a) {
		if k.GetPrefix() == b[:12] || k.GetId() == bKey.GetApiKey().GetId() {
			t.Fatalf("A lists B's key %v", k)
		}
	}
	for _, id := range []string{bKey.GetApiKey().GetId(), authn.KeyID(authn.HashKey(b)), "key_nope", "ep_01"} {
		_, err := h.api.DeleteApiKey(ctx(t), &registryv1.DeleteApiKeyRequest{Id: id}, as(a))
		grpctest.RequireCode(t, err, codes.NotFound)
	}
	if got := h.listKeys(b); len(got) != 2 {
		t.Fatalf("B's keys after A's attempts: %v", got)
	}
}

func TestAnAccountHoldsAtMostTwentyKeys(t *testing.T) {
	h := newHarness(t)
	_, key := h.account("Acme")
	for i := 1; i < registry.MaxAPIKeys; i++ {
		h.newKey(key, fmt.Sprint("key ", i))
	}
	_, err := h.api.CreateApiKey(ctx(t), &registryv1.CreateApiKeyRequest{Name: "one too many"}, as(key))
	grpctest.CheckCode(t, err, codes.FailedPrecondition, "(20)")
	if n := len(h.listKeys(key)); n != registry.MaxAPIKeys {
		t.Fatalf("%d keys listed", n)
	}
	if n, _ := h.redis.Client.Keys(context.Background(), "wh:apikey:*").Result(); len(n) != registry.MaxAPIKeys {
		t.Fatalf("%d lookup entries, want %d (the refused key's is removed)", len(n), registry.MaxAPIKeys)
	}
}

func TestKeysArePagedOldestFirst(t *testing.T) {
	h := newHarness(t)
	_, key := h.account("Acme")
	for i := range 4 {
		h.clock.Advance(time.Millisecond)
		h.newKey(key, fmt.Sprint("key ", i))
	}
	var seen []string
	tok := ""
	for {
		resp, err := h.api.ListApiKeys(ctx(t), &registryv1.ListApiKeysRequest{PageSize: 2, PageToken: tok}, as(key))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range resp.GetApiKeys() {
			seen = append(seen, k.GetName())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if want := []string{registry.FirstKeyName, "key 0", "key 1", "key 2", "key 3"}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("paged %v, want %v", seen, want)
	}
	_, err := h.api.ListApiKeys(ctx(t), &registryv1.ListApiKeysRequest{PageToken: "bogus"}, as(key))
	wantInvalid(t, err, "page_token")
}

// A key of the layout before keys were listed (wh:apikey:<hash> → account,
// nothing else) keeps working and is adopted into the list on first use.
func TestAKeyOfTheOldLayoutKeepsWorkingAndIsListed(t *testing.T) {
	h := newHarness(t)
	acct, _ := h.account("Acme")
	bg := context.Background()
	legacy := "vsk_" + strings.Repeat("L", 43)
	// Today's layout for this account: no keys hash, one lookup entry.
	h.redis.Client.Del(bg, "wh:{a:"+acct+"}:keys", "wh:{a:"+acct+"}:keys:used")
	h.redis.Client.Set(bg, "wh:apikey:"+authn.HashKey(legacy), acct, 0)

	if _, err := h.api.GetSettings(ctx(t), &registryv1.GetSettingsRequest{}, as(legacy)); err != nil {
		t.Fatalf("the old key is refused: %v", err)
	}
	list := h.listKeys(legacy)
	if len(list) != 1 || list[0].GetPrefix() != legacy[:12] || list[0].GetId() != authn.KeyID(authn.HashKey(legacy)) || list[0].GetCreateTime() == nil {
		t.Fatalf("listed %v, want the adopted old key", list)
	}
	second := h.newKey(legacy, "new")
	if _, err := h.api.DeleteApiKey(ctx(t), &registryv1.DeleteApiKeyRequest{Id: list[0].GetId()}, as(second.GetKey())); err != nil {
		t.Fatal(err)
	}
	_, err := h.api.GetSettings(ctx(t), &registryv1.GetSettingsRequest{}, as(legacy))
	grpctest.RequireCode(t, err, codes.Unauthenticated)
}

func TestLastUseIsWrittenAtMostOnceAMinute(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	used := func() string {
		return h.redis.Client.HGet(context.Background(), "wh:{a:"+acct+"}:keys:used", authn.KeyID(authn.HashKey(key))).Val()
	}
	h.listKeys(key)
	first := used()
	if first == "" {
		t.Fatal("no last use written")
	}
	time.Sleep(5 * time.Millisecond)
	h.listKeys(key)
	if got := used(); got != first {
		t.Fatalf("last use rewritten within a minute: %s then %s", first, got)
	}
}
