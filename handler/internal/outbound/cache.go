package outbound

import (
	"context"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// A sender reads, for every delivery, its batch (whose content never changes once accepted)
// and its org's connection. At thousands of sends a minute those reads would double the
// table traffic, so each worker instance keeps them briefly: the batch's content for as long
// as it is used, the connection for a few seconds (a re-authorization is seen that much later;
// a cancel is seen at once, as it is read from the delivery row).

// connectionTTL is how long a worker trusts a connection record it read.
const connectionTTL = 5 * time.Second

// maxCachedBatches bounds the batch cache; past it, the oldest entry goes.
const maxCachedBatches = 256

type cachedBatch struct {
	b    Batch
	used time.Time
}

type cachedConn struct {
	rec  connection.Record
	read time.Time
}

type cache struct {
	mu      sync.Mutex
	batches map[string]*cachedBatch
	conns   map[string]cachedConn
}

// batchContent returns a batch for sending: from the cache, or read (and kept).
func (p *Pipeline) batchContent(ctx context.Context, org tablestore.Org, id string) (Batch, error) {
	key := org.String() + "/" + id
	now := p.now()
	p.cache.mu.Lock()
	if c, ok := p.cache.batches[key]; ok {
		c.used = now
		b := c.b
		p.cache.mu.Unlock()
		return b, nil
	}
	p.cache.mu.Unlock()
	b, _, err := p.store.Batch(ctx, org, id)
	if err != nil {
		return b, err
	}
	p.cache.mu.Lock()
	defer p.cache.mu.Unlock()
	if p.cache.batches == nil {
		p.cache.batches = map[string]*cachedBatch{}
	}
	if len(p.cache.batches) >= maxCachedBatches {
		var oldest string
		for k, c := range p.cache.batches {
			if oldest == "" || c.used.Before(p.cache.batches[oldest].used) {
				oldest = k
			}
		}
		delete(p.cache.batches, oldest)
	}
	p.cache.batches[key] = &cachedBatch{b: b, used: now}
	return b, nil
}

// connectionOf returns the org's connection record, at most connectionTTL old.
func (p *Pipeline) connectionOf(ctx context.Context, org tablestore.Org) (connection.Record, error) {
	now := p.now()
	p.cache.mu.Lock()
	c, ok := p.cache.conns[org.String()]
	p.cache.mu.Unlock()
	if ok && now.Sub(c.read) < connectionTTL {
		return c.rec, nil
	}
	rec, _, err := p.cfg.Connections.Get(ctx, org)
	if err != nil {
		return rec, err
	}
	p.cache.mu.Lock()
	defer p.cache.mu.Unlock()
	if p.cache.conns == nil {
		p.cache.conns = map[string]cachedConn{}
	}
	p.cache.conns[org.String()] = cachedConn{rec: rec, read: now}
	return rec, nil
}

// forgetConnection drops the cached record, after this worker changed it.
func (p *Pipeline) forgetConnection(org tablestore.Org) {
	p.cache.mu.Lock()
	defer p.cache.mu.Unlock()
	delete(p.cache.conns, org.String())
}
