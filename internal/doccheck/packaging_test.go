package doccheck_test

import (
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/flashorder/flashorder/internal/doccheck"
	"github.com/flashorder/flashorder/internal/orderd"
)

// composeFile is the part of docker-compose.yml that the checks read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		DependsOn   any               `yaml:"depends_on"`
	} `yaml:"services"`
}

// checkOrderdEnv checks that every ORDERD_* variable in env names a flag and
// that orderd parses them all.
func checkOrderdEnv(t *testing.T, where string, env map[string]string) {
	t.Helper()
	flags := map[string]bool{}
	orderd.FlagSet(&orderd.Config{}, io.Discard).VisitAll(func(f *flag.Flag) { flags[orderd.EnvName(f.Name)] = true })
	for name := range env {
		if strings.HasPrefix(name, "ORDERD_") && !flags[name] {
			t.Errorf("%s sets %s, which is no orderd flag's variable", where, name)
		}
	}
	m := orderd.NewMain(io.Discard)
	if err := m.ParseFlags(nil, func(k string) string { return env[k] }); err != nil {
		t.Errorf("%s: orderd refuses its environment: %v", where, err)
	}
}

// TestPackagingCompose checks docker-compose.yml without a Docker engine: it
// parses, has the services the README promises, configures both orderd
// instances with real flags for the shared backends, and the load balancer
// fronts both.
func TestPackagingCompose(t *testing.T) {
	var c composeFile
	if err := yaml.Unmarshal([]byte(doccheck.Read(t, "docker-compose.yml")), &c); err != nil {
		t.Fatalf("docker-compose.yml is not valid YAML: %v", err)
	}
	for _, name := range []string{"postgres", "redis", "zookeeper", "orderd-1", "orderd-2", "lb", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no service %s", name)
		}
	}
	for _, name := range []string{"orderd-1", "orderd-2"} {
		s := c.Services[name]
		if s.Build == nil {
			t.Errorf("%s is not built from the Dockerfile (the YAML merge key was not applied?)", name)
		}
		for key, prefix := range map[string]string{"ORDERD_DB": "postgres://", "ORDERD_LOCK": "zk://zookeeper:2181/",
			"ORDERD_IDEMPOTENCY": "redis://redis:6379/"} {
			if !strings.HasPrefix(s.Environment[key], prefix) {
				t.Errorf("%s: %s=%q, want %s...", name, key, s.Environment[key], prefix)
			}
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			env[k] = v
		}
		env["ORDERD_ADMIN_TOKEN"] = "from-the-shell" // compose interpolates it
		checkOrderdEnv(t, "docker-compose.yml "+name, env)
	}
	if lb := c.Services["lb"]; len(lb.Ports) != 1 || !strings.HasSuffix(lb.Ports[0], ":8080") {
		t.Errorf("lb publishes %v, want one port 8080", lb.Ports)
	}
	nginx := doccheck.Read(t, "deploy/nginx.conf")
	for _, upstream := range []string{"server orderd-1:8080", "server orderd-2:8080"} {
		if !strings.Contains(nginx, upstream) {
			t.Errorf("deploy/nginx.conf lacks %q", upstream)
		}
	}
}

// TestPackagingDockerfileAndUnit checks the Dockerfile and the systemd unit
// for what the README promises: a static build, a non-root user, port 8080,
// and ORDERD_* variables that are real flags.
func TestPackagingDockerfileAndUnit(t *testing.T) {
	df := doccheck.Read(t, "Dockerfile")
	for _, want := range []string{"FROM golang:1.26 AS build", "CGO_ENABLED=0", "EXPOSE 8080", `ENTRYPOINT ["/usr/local/bin/orderd"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(df); user == nil || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Errorf("Dockerfile runs as %v, want a non-root USER", user)
	}
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(ORDERD_[A-Z_]+)=(\S+)`).FindAllStringSubmatch(df, -1) {
		env[m[1]] = m[2]
	}
	if len(env) == 0 {
		t.Error("Dockerfile sets no ORDERD_* defaults")
	}
	checkOrderdEnv(t, "Dockerfile", env)

	for _, file := range []string{"deploy/orderd.service", "deploy/orderd.env.example"} {
		env := map[string]string{}
		for _, m := range regexp.MustCompile(`(?m)^#? ?(?:Environment=)?(ORDERD_[A-Z_]+)=(\S+)`).FindAllStringSubmatch(doccheck.Read(t, file), -1) {
			env[m[1]] = m[2]
		}
		if len(env) == 0 {
			t.Errorf("%s sets no ORDERD_* variable", file)
		}
		checkOrderdEnv(t, file, env)
	}
	unit := doccheck.Read(t, "deploy/orderd.service")
	for _, want := range []string{"EnvironmentFile=/etc/flashorder/orderd.env", "ExecStart=/usr/local/bin/orderd", "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict"} {
		if !strings.Contains(unit, want) {
			t.Errorf("deploy/orderd.service lacks %q", want)
		}
	}
}
