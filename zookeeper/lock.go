// Package zookeeper implements flashorder.Locker on Apache ZooKeeper with
// github.com/go-zookeeper/zk (its patched copy in internal/zk): the lock
// recipe of the ZooKeeper documentation, with the details that make it
// trustworthy.
//
//   - One parent znode per key (a container znode, which the server removes
//     when it is empty), named from the key with every byte outside
//     [A-Za-z0-9._-] percent-escaped, so keys such as "a" and "a-b" or "a/b"
//     never share a parent.
//   - Waiters create protected ephemeral-sequential znodes: a random GUID in
//     the name lets a waiter find its own znode again after a connection loss
//     instead of creating a twin. Children are ordered by sequence number and
//     each waiter watches only its predecessor, re-checking after every event.
//   - Every error path deletes the waiter's znode (in the background while the
//     server is unreachable, until it succeeds or the session is gone).
//   - One ZooKeeper session per Locker (per process), with an in-process FIFO
//     queue per key in front: a thousand goroutines that want one key wait in
//     memory, and only the head of the queue has a znode.
//   - A held lock is lost when the session expires, when the client has been
//     disconnected for a third of the session timeout (by then the server may
//     have expired the session), or when its znode disappears.
//   - The fencing token is the znode's czxid, the transaction id of its
//     creation: it grows for every new holder, also when the parent was
//     removed and recreated in between.
package zookeeper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flashorder/flashorder/internal/zk"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/keymutex"
	"github.com/flashorder/flashorder/internal/lockcore"
)

var (
	_ flashorder.Locker = (*Locker)(nil)
	_ flashorder.Lock   = (*lock)(nil)
)

// DefaultSessionTimeout is the session timeout when LockerOptions leaves it
// zero.
const DefaultSessionTimeout = 10 * time.Second

// DefaultLockPrefix is the znode under which the lock parents live when
// LockerOptions leaves Prefix empty.
const DefaultLockPrefix = "/flashorder/locks"

// LockerOptions tunes NewLocker; zero fields take their defaults.
type LockerOptions struct {
	// Prefix is the znode under which the lock parents live, /a/b (a
	// trailing / is dropped); the default is DefaultLockPrefix.
	Prefix string
	// SessionTimeout is the ZooKeeper session timeout that the client asks
	// for (the server clamps it to its own bounds): how long the server
	// keeps the session, and with it the locks, of a client it no longer
	// hears from. The default is DefaultSessionTimeout.
	SessionTimeout time.Duration
	// Logger receives the client library's connection messages at debug
	// level; the default discards them.
	Logger *slog.Logger
}

const (
	// nodeMarker precedes the GUID in a waiter's znode name, as in
	// ZooKeeper's own protected-create recipe.
	nodeMarker = "_c_"
	// seqDigits is the width of the sequence number ZooKeeper appends.
	seqDigits = 10
)

var acl = zk.WorldACL(zk.PermAll)

// Locker is a flashorder.Locker on one ZooKeeper session.
type Locker struct {
	conn    *zk.Conn
	root    string
	timeout time.Duration
	keys    *keymutex.Map

	// ctx ends on Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// sess is the live session, nil while there is none; sessWake is
	// closed and replaced whenever sess changes.
	sess     *session
	sessWake chan struct{}
	// suspect fires when the client stayed disconnected for too long.
	suspect *time.Timer

	// gate counts Lock calls, lock watchers and cleanups, for Close.
	gate lockcore.Gate
}

// session is one ZooKeeper session as the locks see it: done closes when it
// ended, or may have ended, and every lock taken in it is lost.
type session struct {
	id   int64
	done chan struct{}
	once sync.Once
}

func (s *session) end() { s.once.Do(func() { close(s.done) }) }

func (s *session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// NewLocker connects to the ZooKeeper servers, waits for a session (until ctx
// ends) and creates opts.Prefix (persistent znodes) when it does not exist.
func NewLocker(ctx context.Context, servers []string, opts LockerOptions) (*Locker, error) {
	root := strings.TrimSuffix(opts.Prefix, "/")
	if root == "" {
		root = DefaultLockPrefix
	}
	if !strings.HasPrefix(root, "/") || strings.HasSuffix(root, "/") || strings.Contains(root, "//") {
		return nil, fmt.Errorf("zookeeper: prefix %q must look like /a/b", root)
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = DefaultSessionTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Locker{root: root, timeout: opts.SessionTimeout, keys: keymutex.New(), sessWake: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())

	// The event callback reads l.conn under l.mu: hold it until l.conn is set.
	l.mu.Lock()
	conn, _, err := zk.Connect(servers, opts.SessionTimeout,
		zk.WithEventCallback(l.onEvent), zk.WithLogger(zkLogger{logger}), zk.WithLogInfo(false))
	if err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("zookeeper: connect to %v: %w", servers, err)
	}
	l.conn = conn
	l.mu.Unlock()

	if _, err := l.currentSession(ctx); err != nil {
		l.Close()
		return nil, fmt.Errorf("zookeeper: no session with %v: %w", servers, err)
	}
	if err := l.ensurePath(root); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// ensurePath creates every missing znode of path as a persistent one.
func (l *Locker) ensurePath(path string) error {
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			continue
		}
		_, err := l.conn.Create(path[:i], nil, zk.FlagPersistent, acl)
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("zookeeper: create %s: %w", path[:i], err)
		}
	}
	return nil
}

// onEvent follows the session through the client's state changes. The
// library calls it from its connection goroutine: it must not block.
func (l *Locker) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gate.Closed() {
		return
	}
	switch ev.State {
	case zk.StateHasSession:
		l.stopSuspect()
		id := l.conn.SessionID()
		if l.sess != nil && l.sess.id == id {
			return // reconnected within the session
		}
		if l.sess != nil {
			l.sess.end()
		}
		l.setSession(&session{id: id, done: make(chan struct{})})
	case zk.StateDisconnected:
		// The server expires the session a session timeout after it last
		// heard from us; we notice a silent server after two thirds of it
		// at the latest. A third more and the session may be gone: give
		// the locks up then rather than hold them on a hope.
		if l.sess != nil && l.suspect == nil {
			s := l.sess
			var t *time.Timer
			t = time.AfterFunc(l.timeout/3, func() {
				l.mu.Lock()
				defer l.mu.Unlock()
				if l.suspect == t {
					l.suspect = nil
				}
				if l.sess == s {
					s.end()
					l.setSession(nil)
				}
			})
			l.suspect = t
		}
	case zk.StateExpired:
		l.stopSuspect()
		if l.sess != nil {
			l.sess.end()
			l.setSession(nil)
		}
	}
}

// stopSuspect cancels the disconnection timer; l.mu is held.
func (l *Locker) stopSuspect() {
	if l.suspect != nil {
		l.suspect.Stop()
		l.suspect = nil
	}
}

// setSession replaces the session and wakes those waiting for one; l.mu is
// held.
func (l *Locker) setSession(s *session) {
	l.sess = s
	close(l.sessWake)
	l.sessWake = make(chan struct{})
}

// currentSession returns the live session, waiting for one until ctx ends.
func (l *Locker) currentSession(ctx context.Context) (*session, error) {
	for {
		l.mu.Lock()
		s, wake := l.sess, l.sessWake
		l.mu.Unlock()
		if s != nil && !s.ended() {
			return s, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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
	sess, err := l.currentSession(ctx)
	if err != nil {
		release()
		return nil, l.lockErr(key, nil, err)
	}
	parent := l.KeyPath(key)
	guid := newGUID()
	suspect, err := l.create(ctx, sess, parent, guid)
	if err != nil {
		l.cleanup(parent, guid, sess, release)
		return nil, l.lockErr(key, sess, err)
	}
	node, stat, watch, err := l.waitTurn(ctx, sess, parent, guid)
	if err != nil {
		l.cleanup(parent, guid, sess, release)
		return nil, l.lockErr(key, sess, err)
	}
	k := &lock{Held: lockcore.NewHeld(key, stat.Czxid), l: l, parent: parent, guid: guid, node: node,
		sess: sess, release: release, suspect: suspect}
	l.gate.Add() // within this counted call
	go k.watch(watch)
	return k, nil
}

// lockErr turns a failure of Lock into the documented errors.
func (l *Locker) lockErr(key string, sess *session, err error) error {
	lost := errors.Is(err, zk.ErrSessionExpired) || (sess != nil && sess.ended())
	return lockcore.LockErr("zookeeper", key, err, l.ctx.Err() != nil, lost)
}

// transient reports whether err is a connection problem that the client
// recovers from by itself (within the session, or with a new one).
func transient(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrClosing) || errors.Is(err, zk.ErrSessionMoved)
}

// pause waits d, or less when ctx ends or the session does.
func pause(ctx context.Context, sess *session, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-sess.done:
		return flashorder.ErrLockSessionLost
	}
}

func nextBackoff(d time.Duration) time.Duration { return min(2*d, time.Second) }

// create makes the waiter's protected ephemeral-sequential znode under
// parent, creating parent as needed. After a connection loss it looks for
// the GUID before it tries again, so it never makes a twin knowingly;
// suspect reports such a loss (a twin is then possible, and the release
// removes every znode with the GUID).
func (l *Locker) create(ctx context.Context, sess *session, parent, guid string) (suspect bool, err error) {
	prefix := parent + "/" + nodeMarker + guid + "-lock-"
	backoff := 20 * time.Millisecond
	now := true // the next attempt needs no pause
	for {
		if !now {
			if err := pause(ctx, sess, backoff); err != nil {
				return suspect, err
			}
			backoff = nextBackoff(backoff)
		}
		now = false
		if sess.ended() {
			return suspect, flashorder.ErrLockSessionLost
		}
		_, err := l.conn.Create(prefix, nil, zk.FlagEphemeral|zk.FlagSequence, acl)
		switch {
		case err == nil:
			return suspect, nil
		case errors.Is(err, zk.ErrNoNode):
			// No parent yet, or the server just removed the empty
			// container: make it and try again.
			_, err := l.conn.CreateContainer(parent, nil, zk.FlagContainer, acl)
			if err != nil && !errors.Is(err, zk.ErrNodeExists) && !transient(err) {
				return suspect, fmt.Errorf("create %s: %w", parent, err)
			}
			now = err == nil || errors.Is(err, zk.ErrNodeExists)
		case transient(err):
			suspect = true
			// The create may have happened before the connection broke.
			for {
				found, ferr := l.findGUID(parent, guid)
				if ferr == nil && found {
					return suspect, nil
				}
				if ferr == nil || errors.Is(ferr, zk.ErrNoNode) {
					break
				}
				if err := pause(ctx, sess, backoff); err != nil {
					return suspect, err
				}
				backoff = nextBackoff(backoff)
			}
		case errors.Is(err, zk.ErrSessionExpired):
			return suspect, flashorder.ErrLockSessionLost
		default:
			return suspect, fmt.Errorf("create under %s: %w", parent, err)
		}
	}
}

// findGUID reports whether parent has a child with guid, after a sync so
// that the server we talk to has seen every write the leader committed.
func (l *Locker) findGUID(parent, guid string) (bool, error) {
	if _, err := l.conn.Sync(parent); err != nil {
		return false, err
	}
	children, _, err := l.conn.Children(parent)
	if err != nil {
		return false, err
	}
	for _, c := range children {
		if strings.HasPrefix(c, nodeMarker+guid) {
			return true, nil
		}
	}
	return false, nil
}

// seqOf returns the sequence number at the end of a znode name, or -1.
func seqOf(name string) int64 {
	if len(name) < seqDigits || !strings.HasPrefix(name, nodeMarker) {
		return -1
	}
	n, err := strconv.ParseInt(name[len(name)-seqDigits:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// waitTurn waits until the waiter's znode (the first child with guid) is the
// lowest in sequence order, watching only its predecessor and re-checking
// the children after every event. It returns the znode's path and stat, and
// a watch that fires when it is deleted.
func (l *Locker) waitTurn(ctx context.Context, sess *session, parent, guid string) (string, *zk.Stat, <-chan zk.Event, error) {
	backoff := 20 * time.Millisecond
	retry := func(err error) error {
		if !transient(err) {
			return err
		}
		if err := pause(ctx, sess, backoff); err != nil {
			return err
		}
		backoff = nextBackoff(backoff)
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return "", nil, nil, err
		}
		if sess.ended() {
			return "", nil, nil, flashorder.ErrLockSessionLost
		}
		children, _, err := l.conn.Children(parent)
		if err != nil {
			if err := retry(err); err != nil {
				return "", nil, nil, fmt.Errorf("list %s: %w", parent, err)
			}
			continue
		}
		children = slices.DeleteFunc(children, func(c string) bool { return seqOf(c) < 0 })
		slices.SortFunc(children, func(a, b string) int { return int(seqOf(a) - seqOf(b)) })
		own := slices.IndexFunc(children, func(c string) bool { return strings.HasPrefix(c, nodeMarker+guid) })
		if own < 0 {
			// Our ephemeral znode is gone: so is the session that made it.
			return "", nil, nil, flashorder.ErrLockSessionLost
		}
		path := parent + "/" + children[own]
		if own == 0 {
			ok, stat, watch, err := l.conn.ExistsW(path)
			if err != nil {
				if err := retry(err); err != nil {
					return "", nil, nil, fmt.Errorf("stat %s: %w", path, err)
				}
				continue
			}
			if !ok {
				return "", nil, nil, flashorder.ErrLockSessionLost
			}
			return path, stat, watch, nil
		}
		pred := parent + "/" + children[own-1]
		ok, _, watch, err := l.conn.ExistsW(pred)
		if err != nil {
			if err := retry(err); err != nil {
				return "", nil, nil, fmt.Errorf("watch %s: %w", pred, err)
			}
			continue
		}
		if !ok {
			continue
		}
		select {
		case <-watch:
		case <-ctx.Done():
			return "", nil, nil, ctx.Err()
		case <-sess.done:
			return "", nil, nil, flashorder.ErrLockSessionLost
		}
	}
}

// cleanup deletes every znode with guid under parent in the background,
// retrying until it succeeds or the session that made them is over, and only
// then releases the key's in-process queue: the next local waiter never
// queues behind our own leftover.
// On a closed Locker it releases at once: closing the connection removes
// the session's znodes.
func (l *Locker) cleanup(parent, guid string, sess *session, release func()) {
	l.gate.Retry(l.ctx.Done(), func() bool {
		if l.deleteGUID(parent, guid) == nil {
			return true
		}
		// A new session: the server removed the old one's znodes.
		id := l.conn.SessionID()
		return id != 0 && id != sess.id
	}, release)
}

func (l *Locker) deleteGUID(parent, guid string) error {
	children, _, err := l.conn.Children(parent)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, c := range children {
		if strings.HasPrefix(c, nodeMarker+guid) {
			if err := l.conn.Delete(parent+"/"+c, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
				return err
			}
		}
	}
	return nil
}

// KeyPath returns the parent znode of key's waiters, for operators and tests.
func (l *Locker) KeyPath(key string) string { return l.root + "/" + escape(key) }

// Ping checks that the ZooKeeper ensemble answers, for readiness checks.
func (l *Locker) Ping(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		_, _, err := l.conn.Exists(l.root)
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("zookeeper: ping: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("zookeeper: ping: %w", ctx.Err())
	}
}

// Close implements flashorder.Locker: it ends the session (the server deletes
// its znodes), so every held lock is lost and every waiter returns.
func (l *Locker) Close() error {
	if !l.gate.Close() {
		return nil
	}
	// onEvent checks the gate under l.mu: after this, no new timer starts.
	l.mu.Lock()
	l.stopSuspect()
	s := l.sess
	l.mu.Unlock()
	l.cancel()
	if s != nil {
		s.end()
	}
	l.conn.Close()
	l.gate.Wait()
	return nil
}

// escape turns a key into one znode name: bytes outside [A-Za-z0-9._-] are
// percent-encoded (so is '%'), and the "k-" prefix keeps "." and ".." out.
func escape(key string) string { return "k-" + lockcore.Escape(key) }

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type lock struct {
	*lockcore.Held
	l                  *Locker
	parent, guid, node string
	sess               *session
	release            func()
	suspect            bool
}

// watch loses the lock when the session ends or the znode disappears.
func (k *lock) watch(node <-chan zk.Event) {
	defer k.l.gate.Leave()
	for {
		select {
		case ev, ok := <-node:
			if ok && ev.Type == zk.EventNodeDeleted {
				k.lose()
				return
			}
			// Not watching any more (connection closing, session expired):
			// the session's end tells the rest.
			node = nil
		case <-k.sess.done:
			k.lose()
			return
		case <-k.Lost():
			return
		}
	}
}

func (k *lock) lose() {
	if k.Lose() {
		k.l.cleanup(k.parent, k.guid, k.sess, k.release)
	}
}

// Unlock implements flashorder.Lock.
func (k *lock) Unlock(ctx context.Context) error {
	if err := k.Release(); err != nil {
		return err
	}
	if k.suspect {
		k.l.cleanup(k.parent, k.guid, k.sess, k.release)
		return nil
	}
	err := k.l.conn.Delete(k.node, -1)
	if err == nil || errors.Is(err, zk.ErrNoNode) {
		k.release()
		return nil
	}
	k.l.cleanup(k.parent, k.guid, k.sess, k.release)
	return fmt.Errorf("zookeeper: unlock %q (retrying in the background): %w", k.Key(), err)
}

// zkLogger sends the client library's messages to slog at debug level.
type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) { z.l.Debug(fmt.Sprintf(format, args...)) }
