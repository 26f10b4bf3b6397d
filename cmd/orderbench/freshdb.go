package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// freshDatabase creates the empty database name on the server of dbURL (a
// postgres:// or mysql:// URL whose user may create databases) and returns the
// URL of the new database and a function that drops it.
func freshDatabase(ctx context.Context, dbURL, name string) (string, func() error, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", nil, fmt.Errorf("parse --db: %w", err)
	}
	var driver, dsn, drop string
	switch u.Scheme {
	case "postgres", "postgresql":
		driver, dsn, drop = "pgx", dbURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"
	case "mysql":
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.User = "tcp", u.Host, u.User.Username()
		cfg.Passwd, _ = u.User.Password()
		driver, dsn, drop = "mysql", cfg.FormatDSN(), "DROP DATABASE IF EXISTS "+name
	default:
		return "", nil, fmt.Errorf("--fresh-db needs a postgres:// or mysql:// --db, not %q", u.Scheme)
	}
	admin, err := sql.Open(driver, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("connect to create a database: %w", err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	dropFn := func() error {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, drop); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	nu := *u
	nu.Path = "/" + name
	return nu.String(), dropFn, nil
}

// databaseName returns a database name for one strategy's run.
func databaseName(strategy string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(strategy))
	return "orderbench_" + clean + "_" + randomToken()[:8]
}
