package main

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/registry"
	"github.com/firewatch-iot/firewatch/registry/sheet"
)

// The registry in the store (issue 18, docs/registry.md): firewatch starts
// from the store's registry, which the YAML ledger seeds and feeds
// (registry.Store.Startup), and the admin API changes it live.

// openRegistry opens the registry's store and returns the registry to
// start with.
func (s *service) openRegistry() (*devices.Ledger, error) {
	st, err := registry.Open(s.cfg.Registry.Location(s.cfg.Alarms.DB))
	if err != nil {
		return nil, err
	}
	s.regStore = st
	return st.Startup(context.Background(), s.cfg.Ledger, s.log.With("component", "registry"))
}

// mountRegistry makes live the registry that the store's commits change
// and serves the admin API under /api/v1/registry/.
func (s *service) mountRegistry(mux *http.ServeMux, live *devices.Live, reg prometheus.Registerer) {
	s.regStore.Attach(live)
	reg.MustRegister(s.regStore.Collectors()...) // issue 15: the follower's metrics
	s.regStore.SetCheck(s.checkRegistryChange)   // registry_live.go: overrides against the rules in force, secret hashes
	(&registry.API{
		Store: s.regStore,
		Read: func(h http.HandlerFunc) http.HandlerFunc {
			return s.alarms.Require(alarms.RoleViewer, h)
		},
		Write: func(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
			return s.alarms.RequireActor(alarms.RoleAdmin, h)
		},
	}).Register(mux)

	// Spreadsheets (registry/sheet): template, export and import of XLSX and CSV, admin only.
	// Current catches up with other instances' commits first (issue 15), so
	// that an export, or the columns an import leaves out, are the store's.
	current := func() *devices.Ledger {
		s.regStore.Sync(context.Background()) // an error: the registry in force; a commit reports it
		return live.Load()
	}
	sheet.Routes(mux, &sheet.Importer{Commit: sheet.StoreCommit(s.regStore), Current: current},
		func(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
			return s.alarms.RequireActor(alarms.RoleAdmin, h)
		})
}

// followRegistryStore makes live, until ctx is done, the registry changes
// that other instances sharing the store (cluster mode's PostgreSQL) or
// `firewatch registry import` commit (issue 15, registry/follow.go).
func (s *service) followRegistryStore(ctx context.Context) error {
	return s.regStore.Follow(ctx, registry.FollowOptions{Interval: s.cfg.Registry.FollowInterval,
		PollOnly: !s.cfg.Registry.FollowNotify, Logger: s.log.With("component", "registry")})
}

func (s *service) closeRegistry() {
	if s.regStore != nil {
		s.regStore.Close()
	}
}
