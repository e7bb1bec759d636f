// The Go peer of HSEA's API-key read: net/http + pgx v4 doing the same work per request as
// `GET /api/tenant` with an API key — SHA-256 of the key, a per-process key cache (5 s, like
// HSEA's per-thread cache), then set_config('app.tenant_id') and the tenant SELECT sent as one
// pgx batch (one round trip; one Sync, so one implicit transaction, as HSEA sends them),
// answered as JSON. Built from Debian's
// golang-go and golang-github-jackc-pgx-v4-dev (GOPATH mode, offline) by bench/run.
//
//	DATABASE_URL=postgresql://... PORT=8090 POOL=16 ./go-pgx
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
)

type cachedKey struct {
	tenantID string
	expires  time.Time
}

type server struct {
	pool  *pgxpool.Pool
	mu    sync.RWMutex
	cache map[string]cachedKey
}

func problem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"status": status, "code": code, "detail": detail})
}

func (s *server) tenantOf(ctx context.Context, key string) (string, bool) {
	sum := sha256.Sum256([]byte(key))
	hash := hex.EncodeToString(sum[:])
	s.mu.RLock()
	c, ok := s.cache[hash]
	s.mu.RUnlock()
	if ok && time.Now().Before(c.expires) {
		return c.tenantID, true
	}
	// hsea_<12 hex prefix>_<secret>
	if len(key) < 18 || !strings.HasPrefix(key, "hsea_") || key[17] != '_' {
		return "", false
	}
	var tenantID, secretHash string
	var usable bool
	err := s.pool.QueryRow(ctx,
		"SELECT tenant_id::text, secret_hash, usable FROM auth_api_key($1)", key[5:17]).
		Scan(&tenantID, &secretHash, &usable)
	if err != nil || !usable || subtle.ConstantTimeCompare([]byte(secretHash), []byte(hash)) != 1 {
		return "", false
	}
	s.mu.Lock()
	s.cache[hash] = cachedKey{tenantID, time.Now().Add(5 * time.Second)}
	s.mu.Unlock()
	return tenantID, true
}

func (s *server) tenant(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "Bearer ") {
		problem(w, 401, "unauthorized", "Send an API key.")
		return
	}
	tenantID, ok := s.tenantOf(r.Context(), auth[7:])
	if !ok {
		problem(w, 401, "unauthorized", "The API key is not valid.")
		return
	}
	batch := &pgx.Batch{}
	batch.Queue("SELECT set_config('app.tenant_id', $1, true)", tenantID)
	batch.Queue("SELECT id::text, slug, name, status, require_mfa, created_at, updated_at, " +
		"deletion_scheduled_at FROM tenants")
	results := s.pool.SendBatch(r.Context(), batch)
	defer results.Close()
	var id, slug, name, status string
	var requireMfa bool
	var created, updated time.Time
	var deletion *time.Time
	_, err1 := results.Exec()
	err2 := results.QueryRow().Scan(&id, &slug, &name, &status, &requireMfa, &created, &updated,
		&deletion)
	if err1 != nil || err2 != nil {
		problem(w, 500, "internal_error", "An unexpected error occurred.")
		return
	}
	body := map[string]any{"id": id, "slug": slug, "name": name, "status": status,
		"require_mfa": requireMfa,
		"created_at": created.UTC().Format(time.RFC3339Nano),
		"updated_at": updated.UTC().Format(time.RFC3339Nano), "deletion_scheduled_at": deletion}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

func main() {
	cfg, err := pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	if n, err := strconv.Atoi(os.Getenv("POOL")); err == nil {
		cfg.MaxConns = int32(n)
	}
	pool, err := pgxpool.ConnectConfig(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	s := &server{pool: pool, cache: map[string]cachedKey{}}
	http.HandleFunc("/api/tenant", s.tenant)
	log.Fatal(http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil))
}
