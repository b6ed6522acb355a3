package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func query(t *testing.T, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var n int
	return c.QueryRow(ctx, "SELECT 1").Scan(&n)
}

func TestServerSurvivesRestartAndKill(t *testing.T) {
	s := StartServer(t)
	if err := query(t, s.URL); err != nil {
		t.Fatal(err)
	}
	db := s.NewDatabase(t)
	if err := query(t, db); err != nil {
		t.Fatal(err)
	}
	Restart(t, s, true)
	if err := query(t, db); err != nil {
		t.Fatalf("after fast restart: %v", err)
	}
	Kill(t, s)
	if err := query(t, db); err == nil {
		t.Fatal("query after kill succeeded")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := query(t, db); err != nil {
		t.Fatalf("after kill and start: %v", err)
	}
	Restart(t, s, false)
	if err := query(t, db); err != nil {
		t.Fatalf("after immediate restart: %v", err)
	}
}
