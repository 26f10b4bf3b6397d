package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
)

var _ flashorder.ProductChanges = (*ProductChanges)(nil)

// ProductChanges is a flashorder.ProductChanges on Redis pub/sub: one
// channel, the SKU as the message. Pub/sub delivers at most once (a
// subscriber that is reconnecting misses what was published meanwhile), so
// receivers keep a TTL as well; on a Redis Cluster a publish reaches every
// node's subscribers.
type ProductChanges struct {
	client goredis.UniversalClient

	// Channel is the pub/sub channel; the default is
	// "flashorder:products:changed".
	Channel string
	// Timeout bounds a publish; the default is DefaultTimeout.
	Timeout time.Duration
}

// NewProductChanges returns product change announcements on client.
func NewProductChanges(client goredis.UniversalClient) *ProductChanges {
	return &ProductChanges{client: client, Channel: "flashorder:products:changed", Timeout: DefaultTimeout}
}

// Publish implements flashorder.ProductChanges.
func (c *ProductChanges) Publish(ctx context.Context, sku string) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if err := c.client.Publish(ctx, c.Channel, sku).Err(); err != nil {
		return fmt.Errorf("redis: announce a change of %q: %w", sku, err)
	}
	return nil
}

// Subscribe implements flashorder.ProductChanges. It returns once Redis
// confirmed the subscription (or with its error); the client resubscribes
// by itself after a lost connection.
func (c *ProductChanges) Subscribe(ctx context.Context, fn func(sku string)) error {
	ps := c.client.Subscribe(ctx, c.Channel)
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return fmt.Errorf("redis: subscribe to %s: %w", c.Channel, err)
	}
	go func() {
		defer ps.Close()
		msgs := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				fn(m.Payload)
			}
		}
	}()
	return nil
}
