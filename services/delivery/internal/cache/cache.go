// Package cache is a small bounded in-memory cache with per-entry expiry,
// least-recently-used eviction, an optional size budget, and one load per
// key at a time (concurrent misses of a key wait for the first load).
package cache

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/voxscriber/webhooks/pkg/autobatch"
)

// Options size a Cache.
type Options[V any] struct {
	// MaxEntries bounds the number of entries (required).
	MaxEntries int
	// TTL is how long an entry is served.
	TTL time.Duration
	// MaxCost and Cost bound the total size of the values (optional).
	MaxCost int64
	Cost    func(V) int64
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Cache maps K to V.
type Cache[K comparable, V any] struct {
	opts  Options[V]
	mu    sync.Mutex
	ll    *list.List // front: most recently used
	m     map[K]*list.Element
	cost  int64
	calls map[K]*call[V]
	gen   uint64 // bumped by DeleteFunc: loads begun before it are not kept
}

type entry[K comparable, V any] struct {
	key   K
	val   V
	cost  int64
	until time.Time
}

type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// New returns an empty Cache.
func New[K comparable, V any](opts Options[V]) *Cache[K, V] {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache[K, V]{opts: opts, ll: list.New(), m: make(map[K]*list.Element), calls: make(map[K]*call[V])}
}

// Get returns a live entry.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(key)
}

func (c *Cache[K, V]) getLocked(key K) (V, bool) {
	var zero V
	el, ok := c.m[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*entry[K, V])
	if !c.opts.Now().Before(e.until) {
		c.removeLocked(el)
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// Set stores a value.
func (c *Cache[K, V]) Set(key K, val V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cost int64
	if c.opts.Cost != nil {
		cost = c.opts.Cost(val)
		if c.opts.MaxCost > 0 && cost > c.opts.MaxCost {
			return // larger than the whole budget: not cached
		}
	}
	if el, ok := c.m[key]; ok {
		c.removeLocked(el)
	}
	e := &entry[K, V]{key: key, val: val, cost: cost, until: c.opts.Now().Add(c.opts.TTL)}
	c.m[key] = c.ll.PushFront(e)
	c.cost += cost
	for c.ll.Len() > c.opts.MaxEntries || (c.opts.MaxCost > 0 && c.cost > c.opts.MaxCost) {
		c.removeLocked(c.ll.Back())
	}
}

func (c *Cache[K, V]) removeLocked(el *list.Element) {
	e := c.ll.Remove(el).(*entry[K, V])
	delete(c.m, e.key)
	c.cost -= e.cost
}

// DeleteFunc removes the entries whose key matches, and keeps the results
// of loads in flight out of the cache (they may predate the change that
// caused the deletion).
func (c *Cache[K, V]) DeleteFunc(match func(K) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, el := range c.m {
		if match(k) {
			c.removeLocked(el)
		}
	}
}

// Len is the number of entries (expired ones included until touched).
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// Load returns the cached value or calls load once for all concurrent
// callers of the same key; successful results are cached. A waiting caller
// gives up when its ctx ends.
func (c *Cache[K, V]) Load(ctx context.Context, key K, load func(context.Context) (V, error)) (V, error) {
	c.mu.Lock()
	if v, ok := c.getLocked(key); ok {
		c.mu.Unlock()
		return v, nil
	}
	if cl, ok := c.calls[key]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			return cl.val, cl.err
		case <-ctx.Done():
			var zero V
			return zero, ctx.Err()
		}
	}
	cl := &call[V]{done: make(chan struct{})}
	c.calls[key] = cl
	gen := c.gen
	c.mu.Unlock()

	cl.val, cl.err = load(ctx)
	c.mu.Lock()
	keep := cl.err == nil && c.gen == gen
	c.mu.Unlock()
	if keep {
		c.Set(key, cl.val)
	}
	c.mu.Lock()
	delete(c.calls, key)
	c.mu.Unlock()
	close(cl.done)
	return cl.val, cl.err
}

// PayloadSource reads event payloads (pkg/eventstore.Store).
type PayloadSource interface {
	Payload(ctx context.Context, eventID string) ([]byte, error)
}

// BatchPayloads makes a PayloadSource of a reader of many payloads at once
// (eventstore.Store.PayloadMany): reads that miss the cache at about the
// same time (every new event does, once) share round trips.
func BatchPayloads(many autobatch.Func[string, []byte]) PayloadSource {
	return batchedPayloads{autobatch.New(autobatch.DefaultMax, autobatch.DefaultSenders, autobatch.DefaultTimeout, many)}
}

type batchedPayloads struct {
	b *autobatch.Batcher[string, []byte]
}

func (p batchedPayloads) Payload(ctx context.Context, eventID string) ([]byte, error) {
	return p.b.Do(ctx, eventID)
}

// Payloads caches event payloads, which never change once stored.
type Payloads struct {
	next PayloadSource
	c    *Cache[string, []byte]
}

// PayloadConfig sizes a Payloads cache. A zero field takes its default.
type PayloadConfig struct {
	// MaxEntries bounds the number of payloads kept (DefaultPayloadEntries).
	MaxEntries int
	// MaxBytes bounds their total size, each counted with payloadOverhead
	// bytes of bookkeeping (DefaultPayloadBytes).
	MaxBytes int64
	// TTL is how long a payload is served after it was loaded
	// (DefaultPayloadTTL). Payloads never change, so it only bounds how
	// long memory is held for events no longer being delivered.
	TTL time.Duration
}

// Defaults of PayloadConfig: 10,000 payloads, 64 MiB in all (well inside
// the delivery pod's memory limit in k8s/base), each kept a minute.
const (
	DefaultPayloadEntries = 10_000
	DefaultPayloadBytes   = 64 << 20
	DefaultPayloadTTL     = time.Minute
)

// payloadOverhead is what one cached payload costs besides its bytes.
const payloadOverhead = 64

// DefaultPayloadConfig is the payload cache of the delivery service.
func DefaultPayloadConfig() PayloadConfig {
	return PayloadConfig{MaxEntries: DefaultPayloadEntries, MaxBytes: DefaultPayloadBytes, TTL: DefaultPayloadTTL}
}

// NewPayloads caches up to cfg.MaxEntries payloads of at most cfg.MaxBytes
// in all for cfg.TTL each.
func NewPayloads(next PayloadSource, cfg PayloadConfig) *Payloads {
	d := DefaultPayloadConfig()
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = d.MaxEntries
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = d.MaxBytes
	}
	if cfg.TTL <= 0 {
		cfg.TTL = d.TTL
	}
	return &Payloads{next: next, c: New[string, []byte](Options[[]byte]{
		MaxEntries: cfg.MaxEntries, TTL: cfg.TTL, MaxCost: cfg.MaxBytes,
		Cost: func(b []byte) int64 { return int64(len(b)) + payloadOverhead },
	})}
}

// Payload returns the stored body of an event.
func (p *Payloads) Payload(ctx context.Context, eventID string) ([]byte, error) {
	return p.c.Load(ctx, eventID, func(ctx context.Context) ([]byte, error) {
		return p.next.Payload(ctx, eventID)
	})
}
