package peers

import (
	"context"
	"sync"
	"time"

	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// DefaultSubscribersTTL bounds how long a cached subscriber list is used
// when a change announcement was missed.
const DefaultSubscribersTTL = 3 * time.Second

// CachedSubscribers caches ListSubscribers per (account, type), the
// subscribed endpoints with those of them ordered by key. Invalidate
// (wired to pkg/changefeed) drops an account's entries; entries also expire
// after a TTL.
type CachedSubscribers struct {
	next ingest.Subscribers
	ttl  time.Duration
	now  func() time.Time

	mu       sync.RWMutex
	accounts map[string]*acctEntry
}

type acctEntry struct {
	gen   uint64 // bumped by Invalidate: loads begun before it are not kept
	types map[string]subsEntry
}

type subsEntry struct {
	subs  registryclient.SubscriberList
	until time.Time
}

var _ ingest.Subscribers = (*CachedSubscribers)(nil)

// NewCachedSubscribers wraps next (ttl DefaultSubscribersTTL when 0).
func NewCachedSubscribers(next ingest.Subscribers, ttl time.Duration) *CachedSubscribers {
	if ttl <= 0 {
		ttl = DefaultSubscribersTTL
	}
	return &CachedSubscribers{next: next, ttl: ttl, now: time.Now, accounts: make(map[string]*acctEntry)}
}

// ListSubscribers implements ingest.Subscribers. The returned list is the
// caller's.
func (c *CachedSubscribers) ListSubscribers(ctx context.Context, accountID, eventType string) (registryclient.SubscriberList, error) {
	now := c.now()
	c.mu.RLock()
	a := c.accounts[accountID]
	var gen uint64
	if a != nil {
		gen = a.gen
		if e, ok := a.types[eventType]; ok && now.Before(e.until) {
			subs := e.subs.Clone()
			c.mu.RUnlock()
			return subs, nil
		}
	}
	c.mu.RUnlock()

	subs, err := c.next.ListSubscribers(ctx, accountID, eventType)
	if err != nil {
		return registryclient.SubscriberList{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a = c.accounts[accountID]
	if a == nil {
		if gen != 0 {
			return subs, nil // invalidated meanwhile
		}
		a = &acctEntry{types: make(map[string]subsEntry)}
		c.accounts[accountID] = a
	}
	if a.gen == gen {
		a.types[eventType] = subsEntry{subs: subs.Clone(), until: now.Add(c.ttl)}
	}
	return subs, nil
}

// Invalidate forgets an account's subscriber lists, including loads in
// flight.
func (c *CachedSubscribers) Invalidate(accountID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.accounts[accountID]
	if a == nil {
		// A load in flight saw no entry (gen 0); remember the bump.
		c.accounts[accountID] = &acctEntry{gen: 1, types: make(map[string]subsEntry)}
		return
	}
	a.gen++
	clear(a.types)
}
