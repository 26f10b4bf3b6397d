package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
)

var _ flashorder.SoldOutCache = (*SoldOutCache)(nil)

// SoldOutCache is a flashorder.SoldOutCache on Redis: one key per sold-out
// SKU, expiring after the mark's ttl.
type SoldOutCache struct {
	client goredis.UniversalClient

	// Prefix is prepended to the SKU in the key; the default is
	// "flashorder:soldout:".
	Prefix string
	// Timeout bounds each Redis call; the default is DefaultTimeout.
	Timeout time.Duration
}

// NewSoldOutCache returns a sold-out cache on client.
func NewSoldOutCache(client goredis.UniversalClient) *SoldOutCache {
	return &SoldOutCache{client: client, Prefix: "flashorder:soldout:", Timeout: DefaultTimeout}
}

// SoldOut implements flashorder.SoldOutCache.
func (c *SoldOutCache) SoldOut(ctx context.Context, sku string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	n, err := c.client.Exists(ctx, c.Prefix+sku).Result()
	if err != nil {
		return false, fmt.Errorf("redis: read sold-out mark of %q: %w", sku, err)
	}
	return n == 1, nil
}

// MarkSoldOut implements flashorder.SoldOutCache.
func (c *SoldOutCache) MarkSoldOut(ctx context.Context, sku string, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if err := c.client.Set(ctx, c.Prefix+sku, 1, ttl).Err(); err != nil {
		return fmt.Errorf("redis: mark %q sold out: %w", sku, err)
	}
	return nil
}

// ClearSoldOut implements flashorder.SoldOutCache.
func (c *SoldOutCache) ClearSoldOut(ctx context.Context, sku string) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if err := c.client.Del(ctx, c.Prefix+sku).Err(); err != nil {
		return fmt.Errorf("redis: clear sold-out mark of %q: %w", sku, err)
	}
	return nil
}
