package cluster

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// PatroniMember is one member of the Patroni cluster as its REST API's
// GET /cluster shows it.
type PatroniMember struct {
	// Name is the member's (and the services script's unit's) name,
	// patroni-1..3; Role is leader, sync_standby or replica; State is
	// running, streaming, starting, stopped, ...
	Name, Role, State string
}

// patroniAPIs are the members' REST endpoints (FLASHORDER_TEST_PATRONI_API).
func (s *Services) patroniAPIs() []string {
	return strings.Split(s.Env["FLASHORDER_TEST_PATRONI_API"], ",")
}

// patroniCall sends one REST request to the first member that answers.
func (s *Services) patroniCall(ctx context.Context, method, path string, body any) ([]byte, error) {
	var payload []byte
	if body != nil {
		payload, _ = json.Marshal(body)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for _, api := range s.patroniAPIs() {
		req, err := http.NewRequestWithContext(ctx, method, api+path, bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("%s %s: %d %s %v", method, api+path, resp.StatusCode, b, err)
			continue
		}
		return b, nil
	}
	return nil, fmt.Errorf("cluster: patroni %s %s: %w", method, path, last)
}

// PatroniMembers returns the cluster's members as a live member sees them.
func (s *Services) PatroniMembers(ctx context.Context) ([]PatroniMember, error) {
	b, err := s.patroniCall(ctx, http.MethodGet, "/cluster", nil)
	if err != nil {
		return nil, err
	}
	var c struct{ Members []PatroniMember }
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("cluster: patroni /cluster: %w", err)
	}
	return c.Members, nil
}

// PatroniRole returns the name of the member with role, "" when none has it.
func PatroniRole(members []PatroniMember, role string) string {
	for _, m := range members {
		if m.Role == role {
			return m.Name
		}
	}
	return ""
}

// PatroniHealthy reports whether members are n members, all running or
// streaming, with a leader and a synchronous standby.
func PatroniHealthy(members []PatroniMember, n int) bool {
	if len(members) != n || PatroniRole(members, "leader") == "" || PatroniRole(members, "sync_standby") == "" {
		return false
	}
	for _, m := range members {
		if m.State != "running" && m.State != "streaming" {
			return false
		}
	}
	return true
}

// WaitPatroni polls the members until ok accepts them or ctx ends, and
// returns the members it accepted.
func (s *Services) WaitPatroni(ctx context.Context, ok func([]PatroniMember) bool) ([]PatroniMember, error) {
	var last []PatroniMember
	var err error
	for {
		last, err = s.PatroniMembers(ctx)
		if err == nil && ok(last) {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: patroni members %+v (%v): %w", last, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PatroniConfig changes the cluster's dynamic configuration (PATCH /config),
// say {"synchronous_mode_strict": true}.
func (s *Services) PatroniConfig(ctx context.Context, patch map[string]any) error {
	_, err := s.patroniCall(ctx, http.MethodPatch, "/config", patch)
	return err
}

// Switchover moves the Patroni primary to the synchronous standby and
// returns once the new primary says so.
func (s *Services) Switchover(ctx context.Context) error {
	_, err := s.run(ctx, "switchover", "patroni")
	return err
}

// WaitDatabase waits until every host of the multi-host dbURL has the
// database: right after CREATE DATABASE an asynchronous replica may not have
// replayed it yet, and libpq-style host lists (pgx) stop at a host that
// answers "database does not exist" instead of trying the next.
func WaitDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil // one server: the database is there once created
	}
	for _, h := range strings.Split(u.Host, ",") {
		one := *u
		one.Host = h
		q := one.Query()
		q.Del("target_session_attrs")
		one.RawQuery = q.Encode()
		for {
			db, err := sql.Open("pgx", one.String())
			if err == nil {
				err = db.PingContext(ctx)
				db.Close()
			}
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("cluster: database on %s: %v: %w", h, err, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}
