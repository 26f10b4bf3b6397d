package checkout

// RefreshReads returns how many reads of many products c's refresher has
// ended, what each read kept in place.
func RefreshReads(c *ProductCache) uint64 { return c.readsMany.Load() }
