package erasure

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/warehouse"
)

// With a ClickHouse cluster an erasure is refused before anything is
// touched, naming the cluster: its mutations would have to run on every
// shard's local tables, which is not built yet.
func TestEraseRefusesCluster(t *testing.T) {
	e := New(Config{ClickHouse: warehouse.Config{Addr: "127.0.0.1:1", Database: "leadstream", Cluster: "lstest"}},
		leadstate.NewStore(nil), slog.New(slog.DiscardHandler), nil)
	_, err := e.Erase(context.Background(), "lead-1", 0)
	if !errors.Is(err, warehouse.ErrClusterUnsupported) || !strings.Contains(err.Error(), `"lstest"`) {
		t.Errorf("Erase with a cluster: %v, want ErrClusterUnsupported naming it", err)
	}
}
