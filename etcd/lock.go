// Package etcd implements flashorder.Locker on etcd v3: one lease-backed
// concurrency.Session per Locker (per process), and the recipe of
// concurrency.Mutex for each acquisition (see Locker.acquire for the one
// change).
//
// The recipe names a waiter's key after the session's lease, so two
// goroutines of one session that lock the same key would share a key and both
// "hold" it; an in-process FIFO queue per key in front makes sure that only
// one goroutine of the process waits at etcd for a key at a time (and spares
// etcd a key and a watch per goroutine). Waiters queue in etcd by create
// revision: FIFO.
//
// The fencing token is the revision etcd reported when the lock was
// acquired: the previous holder's key was deleted at a higher revision than
// anything it saw, and the next holder is answered after that deletion. A
// held lock is lost when the session's lease ends (expired after missed
// keep-alives, revoked, or the Locker closed). A Locker whose lease ended
// makes a new session for the next Lock.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/keymutex"
	"github.com/flashorder/flashorder/internal/lockcore"
)

var (
	_ flashorder.Locker = (*Locker)(nil)
	_ flashorder.Lock   = (*lock)(nil)
)

// DefaultLockTTL is the lease TTL when LockerOptions leaves it zero.
const DefaultLockTTL = 10 * time.Second

// DefaultLockPrefix is the key prefix of the locks when LockerOptions leaves
// it empty.
const DefaultLockPrefix = "/flashorder/locks/"

// LockerOptions tunes NewLocker; zero fields take their defaults.
type LockerOptions struct {
	// Prefix starts every key of the locker (a / is added when it does not
	// end with one); the default is DefaultLockPrefix.
	Prefix string
	// TTL is the session lease's time to live, rounded up to whole seconds:
	// how long etcd keeps the locks of a client it no longer hears from.
	// The default is DefaultLockTTL.
	TTL time.Duration
	// DialTimeout bounds connecting to etcd; the default is 5 s.
	DialTimeout time.Duration
}

// Locker is a flashorder.Locker on one etcd session at a time.
type Locker struct {
	client *clientv3.Client
	prefix string
	ttl    int
	keys   *keymutex.Map

	// ctx ends on Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	sess    *session
	newSess sync.Mutex // one session creation at a time

	// gate counts Lock calls and cleanups, for Close.
	gate lockcore.Gate
}

// session is a concurrency.Session with a context that ends with its lease.
type session struct {
	*concurrency.Session
	ctx context.Context
}

// NewLocker connects to etcd and starts a session (its lease granted before
// ctx ends). Keys live under opts.Prefix.
func NewLocker(ctx context.Context, endpoints []string, opts LockerOptions) (*Locker, error) {
	prefix := opts.Prefix
	if prefix == "" || prefix == "/" {
		prefix = DefaultLockPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultLockTTL
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: opts.DialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %v: %w", endpoints, err)
	}
	l := &Locker{client: client, prefix: prefix, ttl: int(math.Ceil(opts.TTL.Seconds())), keys: keymutex.New()}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	if _, err := l.session(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// session returns the live session, making a new one when the last one's
// lease ended.
func (l *Locker) session(ctx context.Context) (*session, error) {
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	if s != nil && s.ctx.Err() == nil {
		return s, nil
	}
	l.newSess.Lock()
	defer l.newSess.Unlock()
	l.mu.Lock()
	s = l.sess
	l.mu.Unlock()
	if s != nil && s.ctx.Err() == nil {
		return s, nil
	}
	// Grant with the caller's ctx; the session's keep-alives live as long
	// as the Locker.
	lease, err := l.client.Grant(ctx, int64(l.ttl))
	if err != nil {
		return nil, fmt.Errorf("etcd: grant a %d s lease: %w", l.ttl, err)
	}
	cs, err := concurrency.NewSession(l.client, concurrency.WithLease(lease.ID), concurrency.WithTTL(l.ttl), concurrency.WithContext(l.ctx))
	if err != nil {
		return nil, fmt.Errorf("etcd: start session: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-cs.Done()
		cancel()
	}()
	s = &session{Session: cs, ctx: sctx}
	// Close closes the gate before it reads l.sess under l.mu: either it
	// sees this session, or this sees the gate closed.
	l.mu.Lock()
	if l.gate.Closed() {
		l.mu.Unlock()
		cs.Close()
		return nil, flashorder.ErrLockerClosed
	}
	l.sess = s
	l.mu.Unlock()
	return s, nil
}

// Lock implements flashorder.Locker.
func (l *Locker) Lock(ctx context.Context, key string) (flashorder.Lock, error) {
	if !l.gate.Enter() {
		return nil, flashorder.ErrLockerClosed
	}
	defer l.gate.Leave()
	ctx, stop := lockcore.MergeCancel(ctx, l.ctx)
	defer stop()
	release, err := l.keys.Lock(ctx, key)
	if err != nil {
		return nil, l.lockErr(key, nil, err)
	}
	s, err := l.session(ctx)
	if err != nil {
		release()
		return nil, l.lockErr(key, nil, err)
	}
	// Stop waiting when the lease ends: our key is gone with it.
	wctx, wstop := lockcore.MergeCancel(ctx, s.ctx)
	defer wstop()
	pfx := l.KeyPrefix(key)
	myKey := fmt.Sprintf("%s/%x", pfx, s.Lease())
	token, err := l.acquire(wctx, s, pfx, myKey)
	if err != nil {
		// Whatever happened, our key may exist: delete it (in the
		// background while etcd is unreachable).
		l.cleanup(s, myKey, release)
		return nil, l.lockErr(key, s, err)
	}
	k := &lock{Held: lockcore.NewHeld(key, token), l: l, myKey: myKey, sess: s, release: release}
	k.stop = context.AfterFunc(s.ctx, k.lose)
	return k, nil
}

// acquire is etcd's mutex recipe (concurrency.Mutex): put myKey under pfx
// with the session's lease, then wait until no key under pfx has a lower
// create revision. It differs in one point: it watches a predecessor from the
// revision after the one it read, which etcd serves from its synced watcher
// group at once; concurrency.Mutex watches from the revision it read, which
// lands in the unsynced group that etcd serves every 100 ms, and made every
// handoff cost tens of milliseconds. It returns the fencing token: the
// revision at which this waiter saw itself first.
func (l *Locker) acquire(ctx context.Context, s *session, pfx, myKey string) (int64, error) {
	put := clientv3.OpPut(myKey, "", clientv3.WithLease(s.Lease()))
	getOwner := clientv3.OpGet(pfx+"/", clientv3.WithFirstCreate()...)
	resp, err := l.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(myKey), "=", 0)).
		Then(put, getOwner).Else(clientv3.OpGet(myKey), getOwner).Commit()
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", myKey, err)
	}
	myRev := resp.Header.Revision
	if !resp.Succeeded {
		myRev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	if owner := resp.Responses[1].GetResponseRange().Kvs; len(owner) == 0 || owner[0].CreateRevision == myRev {
		return resp.Header.Revision, nil
	}
	lastBefore := append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(myRev-1))
	for {
		// The newest waiter before us, and whether our key still exists.
		r, err := l.client.Txn(ctx).Then(clientv3.OpGet(pfx+"/", lastBefore...), clientv3.OpGet(myKey)).Commit()
		if err != nil {
			return 0, fmt.Errorf("read waiters of %s: %w", pfx, err)
		}
		if len(r.Responses[1].GetResponseRange().Kvs) == 0 {
			return 0, flashorder.ErrLockSessionLost // the lease and our key are gone
		}
		before := r.Responses[0].GetResponseRange().Kvs
		if len(before) == 0 {
			return r.Header.Revision, nil
		}
		if err := l.waitDelete(ctx, string(before[0].Key), r.Header.Revision+1); err != nil {
			return 0, err
		}
	}
}

// waitDelete waits until key is deleted at revision rev or later.
func (l *Locker) waitDelete(ctx context.Context, key string, rev int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range l.client.Watch(ctx, key, clientv3.WithRev(rev), clientv3.WithFilterPut()) {
		if wr.CompactRevision != 0 {
			return nil // history compacted: read the waiters again
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("watch %s: channel closed", key)
}

// lockErr turns a failure of Lock into the documented errors.
// The gate counts as closed before l.ctx ends: Close revokes the lease (and
// fails the waiters) first.
func (l *Locker) lockErr(key string, s *session, err error) error {
	closed := l.gate.Closed() || l.ctx.Err() != nil
	return lockcore.LockErr("etcd", key, err, closed, s != nil && s.ctx.Err() != nil)
}

// cleanup deletes key in the background until it succeeds or the session's
// lease is gone (and the key with it), and only then releases the key's
// in-process queue: the next local waiter would reuse the same etcd key.
// On a closed Locker it releases at once: Close revokes the lease, which
// deletes the key.
func (l *Locker) cleanup(s *session, key string, release func()) {
	l.gate.Retry(s.ctx.Done(), func() bool {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		_, err := l.client.Delete(ctx, key)
		cancel()
		return err == nil || s.ctx.Err() != nil
	}, release)
}

// KeyPrefix returns the etcd prefix under which key's waiters put their
// keys, for operators and tests. Bytes of key outside [A-Za-z0-9._-] are
// percent-escaped, so that no key's prefix is another's.
func (l *Locker) KeyPrefix(key string) string { return l.prefix + lockcore.Escape(key) }

// Ping checks that etcd answers, for readiness checks.
func (l *Locker) Ping(ctx context.Context) error {
	if _, err := l.client.Get(ctx, l.prefix, clientv3.WithCountOnly(), clientv3.WithLimit(1)); err != nil {
		return fmt.Errorf("etcd: ping: %w", err)
	}
	return nil
}

// Close implements flashorder.Locker: it revokes the session's lease (etcd
// deletes its keys), so every held lock is lost and every waiter returns.
func (l *Locker) Close() error {
	if !l.gate.Close() {
		return nil
	}
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	var errs []error
	if s != nil {
		// Revoke before cancelling l.ctx: the revoke runs under it.
		if err := s.Close(); err != nil && s.ctx.Err() == nil {
			errs = append(errs, fmt.Errorf("etcd: revoke session lease: %w", err))
		}
	}
	l.cancel()
	l.gate.Wait()
	if err := l.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("etcd: close client: %w", err))
	}
	return errors.Join(errs...)
}

type lock struct {
	*lockcore.Held
	l       *Locker
	myKey   string
	sess    *session
	stop    func() bool
	release func()
}

// lose runs when the session's lease ends: etcd deleted the key with it.
func (k *lock) lose() {
	if k.Lose() {
		k.release()
	}
}

// Unlock implements flashorder.Lock.
func (k *lock) Unlock(ctx context.Context) error {
	if err := k.Release(); err != nil {
		return err
	}
	k.stop()
	if _, err := k.l.client.Delete(ctx, k.myKey); err != nil {
		k.l.cleanup(k.sess, k.myKey, k.release)
		return fmt.Errorf("etcd: unlock %q (retrying in the background): %w", k.Key(), err)
	}
	k.release()
	return nil
}
