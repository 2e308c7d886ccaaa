package lease

import "context"

// RenewOnce runs one renewal round trip, as Run does every TTL/3.
func (k *Keeper) RenewOnce(ctx context.Context) bool { return k.renew(ctx) }
